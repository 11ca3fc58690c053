"""VDI and SR messages: create, destroy, snapshot, clone, resize, copy, CBT, hidden setters, scan."""
