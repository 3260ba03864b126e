"""Every face recognizer the workbench explains, behind one interface (:mod:`.base`)."""
