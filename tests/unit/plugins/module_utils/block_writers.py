"""A writer for copy_node that keeps what it is given, block by block, in memory."""

from ansible_collections.xapi.sxm.plugins.module_utils.datapath import BLOCK


class RecordingWriter:
    def __init__(self):
        self.blocks = {}
        self.written = 0

    def add(self, block, data):
        for i in range(0, len(data), BLOCK):
            self.blocks[block + i // BLOCK] = bytes(data[i:i + BLOCK])
        self.written += len(data)

    def flush(self):
        pass
