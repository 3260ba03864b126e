"""Every face recognizer the workbench explains, behind one interface (:mod:`.base`).

Loaders are registered by name or file suffix (:mod:`.registry`); other packages add theirs with
``register_recognizer`` from an entry point of the group ``cqa.recognizers``.
"""

from cqa_core.recognizers.registry import DEFAULT, DLIB, LoadOptions, register_recognizer

__all__ = ["DEFAULT", "DLIB", "LoadOptions", "register_recognizer"]
