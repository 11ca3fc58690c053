"""A guest that writes while a warm migration runs (the simulator's guest-write endpoint)."""

import threading
import time

from xapisim import client

RECORD = 4096


class Guest(threading.Thread):
    """Writes numbered 4 KiB records at a steady rate into two disks of a running VM, each at an
    offset of its own, and logs every write the pool acknowledged; stops when the VM stops."""

    def __init__(self, pool, x, vm, sizes, interval=0.02):
        super().__init__(daemon=True)
        self.pool, self.x, self.vm, self.sizes, self.interval = pool, x, vm, sizes, interval
        self.uuid = x.xenapi.VM.get_uuid(vm)
        self.acknowledged = []          # (userdevice, offset, data)
        self.stopping = threading.Event()

    def record(self, number):
        device = str(number % 2)
        slots = self.sizes[number % 2] // RECORD
        offset = ((number // 2) * 37 % slots) * RECORD      # 37 is prime to the slot count: no overlap
        data = (b"record %08d of the guest on disk %s|" % (number, device.encode())).ljust(RECORD, b"#")
        return device, offset, data

    def run(self):
        number = 0
        while not self.stopping.is_set():
            device, offset, data = self.record(number)
            status, dummy, dummy = client.http_request(
                self.pool, "POST", "/xapisim/guest_write",
                {"vm": self.uuid, "userdevice": device, "offset": str(offset)}, self.x, data)
            if status != 200:
                return              # the VM stopped
            self.acknowledged.append((device, offset, data))
            number += 1
            time.sleep(self.interval)
