# -*- coding: utf-8 -*-
# Copyright: (c) 2026, xapi.sxm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Memory images: the suspend VDI of a suspended VM and of each checkpoint (a snapshot with
memory). Each is copied once into a destination VDI of type ``suspend``, which the metadata
import then names as the suspend_VDI of the VM or checkpoint (``vdi:`` map, as for disks), so
that the VM arrives suspended and a checkpoint can be reverted to there.

An image is a disk with no history: the mirror of a tree of one leaf (``ImageMirror``, a
DiskMirror whose working VDI is the copy), with every guarantee of the disks' mirror: blocks
read with block status, each written block read back, the ``sxm:holds`` marker for a re-run.
An image never changes (resuming a VM destroys its image; the next suspend writes a new VDI),
so a re-run trusts a finished copy by the marker alone, without reading the image again.
Its ``sxm:userdevice`` is ``memory:<uuid of the VM or checkpoint>``: a VM suspended again
since has its old copy brought to the new image, not a second copy.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.xapi.sxm.plugins.module_utils import markers, mirror

DEVICE_PREFIX = "memory:"


def device_of(node):
    return DEVICE_PREFIX + node.uuid


class ImageHolder:
    """The one node of an image's tree: a "VM" that is halted (the image does not change)
    and whose only disk is the image."""

    is_vm = True
    parent = None
    power_state = "Halted"

    def __init__(self, node, image):
        self.uuid = node.uuid
        self.name_label = "memory image of %s" % node.name_label
        self.disks = {device_of(node): image}


class ImageTree:
    """The tree DiskMirror walks for an image: no snapshots, the image as the leaf."""

    def __init__(self, node, image):
        self.vm = ImageHolder(node, image)
        self.nodes = {}

    def mirror_walk(self, userdevice):
        return []


class ImageMirror(mirror.DiskMirror):
    """Copies the memory image of ``node`` (a suspended VM or a checkpoint) to ``dst_sr``."""

    VDI_TYPE = "suspend"

    def __init__(self, src, dst, node, dst_sr, job, **kwargs):
        kwargs["use_cbt"] = False
        super(ImageMirror, self).__init__(src, dst, ImageTree(node, node.memory), device_of(node), dst_sr,
                                          job, **kwargs)
        self.image = node.memory

    def run(self, sync_leaf=True):
        # the image is the leaf, and it never changes, even while the VM's own disks run
        return super(ImageMirror, self).run(sync_leaf=True)

    def _trusted(self, marker, walk, leaf):
        if marker.startswith("leaf:%s:" % self.image.uuid):
            return mirror.Held(marker, self.image)
        return super(ImageMirror, self)._trusted(marker, walk, leaf)


def plan_images(dst, tree, sr_for):
    """The plan's rows for the tree's memory images. ``sr_for(source SR ref)``: the
    destination SR ref for an image (plan.memory_sr_for)."""
    rows = []
    for node, image in tree.memory_images():
        sr = sr_for(image.sr_ref)
        rows.append({"node_uuid": node.uuid, "name_label": node.name_label, "userdevice": device_of(node),
                     "label": "memory image of %s" % node.name_label, "vdi_uuid": image.uuid,
                     "virtual_size": image.virtual_size, "estimated_bytes": image.physical_utilisation,
                     "bytes_to_read": image.virtual_size, "destination_sr_ref": sr,
                     "destination_sr": dst.call("SR.get_uuid", sr)})
    return rows


def image_nodes(tree):
    return {device_of(node): node for node, dummy in tree.memory_images()}


def mirrored_pairs(dst, the_plan):
    """{source image uuid: destination uuid} of the images copied, and what is not yet."""
    pairs, missing = {}, []
    for row in the_plan.get("memory_images", []):
        working, dummy, dummy = mirror.find_marked(dst, row["destination_sr_ref"], the_plan["job"], row["userdevice"])
        holds = working[1]["other_config"].get(markers.HOLDS, "") if working else ""
        if holds.startswith("leaf:%s:" % row["vdi_uuid"]):
            pairs[row["vdi_uuid"]] = working[1]["uuid"]
        else:
            missing.append(row["label"])
    return pairs, missing


def remove_stale(dst, the_plan):
    """Copies of images the source no longer has (a checkpoint deleted, a VM resumed since):
    removed. Returns their uuids."""
    wanted = {row["userdevice"] for row in the_plan.get("memory_images", [])}
    removed = []
    for ref, rec in sorted(markers.job_vdis(dst, dst.call("SR.get_all"), the_plan["job"]).items()):
        device = rec["other_config"].get(markers.DEVICE, "")
        if device.startswith(DEVICE_PREFIX) and device not in wanted:
            dst.call("VDI.destroy", ref)
            removed.append(rec["uuid"])
    return removed
