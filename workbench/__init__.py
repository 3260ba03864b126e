"""CQA-Face workbench: ipywidgets + plotly views over ``cqa_core.explain`` (no tensor math here).

Start-up note: plotly's FigureWidget imports nbformat -> jsonschema, whose optional IRI format
checker (``rfc3987_syntax``) compiles ~40 lark grammars at import (~2 s of a Voila kernel's start
on a busy 2-core machine). The workbench never validates IRIs, so unless jsonschema is already
loaded we mark that optional module absent; jsonschema then skips that one format check.
"""

import sys

if "jsonschema" not in sys.modules:
    sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[assignment]
