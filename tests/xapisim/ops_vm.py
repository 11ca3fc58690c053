"""VM, VBD and VIF messages: snapshot, checkpoint, clone, copy, revert, power operations."""
