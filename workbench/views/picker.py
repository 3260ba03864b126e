"""The sidebar's "add a model" box: what its placeholder, tooltip and empty-box message say.

Which models a viewer may add is the model side's rule, learnt from it (``Session.any_model_path``):
on a workbench only its owner can open (``cqa workbench`` on loopback, behind its login, no
``--base-url``) or in a notebook's own kernel, any model file the recognizer registry can load;
on a shared one, only its served model, ``dlib`` and files in the folder given by ``--models DIR``.

    W.Text(placeholder=path_hint(session.any_model_path), tooltip=path_rule(session.any_model_path))
"""

from __future__ import annotations

ANY_PATH_HINT = "path to a model file (.safetensors, .onnx, ...)"
"""The placeholder where any model file on the workbench's machine may be added."""
SHARED_HINT = "a file name from the --models folder, or dlib"
"""The placeholder on a shared workbench (its allowlist)."""


def path_hint(any_path: bool) -> str:
    """The model box's placeholder: a path to any model file, or a name from the ``--models`` folder."""
    return ANY_PATH_HINT if any_path else SHARED_HINT


def path_rule(any_path: bool) -> str:
    """The rule in one sentence (the box's tooltip)."""
    if any_path:
        return ("any model file on the workbench's machine: a .safetensors CQA-Face checkpoint or run folder, an "
                "insightface backbone.pth, an .onnx face embedder; or dlib")
    return ("this workbench is shared: only its served model, dlib and files in the folder given by --models DIR "
            "can be loaded")


def empty_message(any_path: bool) -> str:
    """What pressing "add a model" with an empty box says."""
    what = "a model file's path (.safetensors, .pth, .onnx)" if any_path else "a file name from the --models folder"
    return f"type {what} or dlib, then press add a model"
