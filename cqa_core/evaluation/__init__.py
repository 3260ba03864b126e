"""Evaluation: the protocols (verify, masked, cross-quality, identify, EDC) and their folds, face
scores, the dataset audit and the ablation grid. ``cqa eval`` / ``cqa audit`` only parse flags and
call these; the arithmetic they share with training is ``cqa_core.metrics``.

* ``protocols``    ``evaluate(model, data, protocol, Options)``, ``embed``, ``refold``, ``pair_sides``
* ``edc``          error-versus-discard characteristics of a quality score
* ``face_scores``  per-face readings (embedding, norm, QAN quality, overall quality, CAL) in batches
* ``audit``        ``cqa audit``: every face of a dataset scored into Parquet, resumable, DDP-sharded
* ``audit_source`` what an audit reads (aligned folders, RecordIO)
* ``audit_table``  an audit file as a viewer reads it (rows, ranking, each row's face), torch-free
* ``ablation``     the paper's ablation grid, trained and measured (``python -m cqa_core.evaluation.ablation``)
"""
