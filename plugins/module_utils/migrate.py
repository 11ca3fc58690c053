# -*- coding: utf-8 -*-
# Copyright: (c) 2026, xapi.sxm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The flow of one VM (DESIGN.md "The flow of one VM"), one function per step: plan, mirror
every disk's tree, metadata and fix-ups, verify, cut over. Each step plans afresh or takes
the plan, finds what earlier runs left through the ``sxm:*`` markers and returns its own
result; ``migrate`` runs them all in one process (the ``vm_migrate`` module), the role runs
them as tasks of their own. Cold mode: the VM is halted.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.xapi.sxm.plugins.module_utils import cutover, datapath, markers, memory, metadata, mirror, warm
from ansible_collections.xapi.sxm.plugins.module_utils import plan as planning, verify as verification
from ansible_collections.xapi.sxm.plugins.module_utils import tree as treemod
from ansible_collections.xapi.sxm.plugins.module_utils.errors import StateError, SxmError, XapiFailure
from ansible_collections.xapi.sxm.plugins.module_utils.progress import Progress
from ansible_collections.xapi.sxm.plugins.module_utils.report import merge_results

PROGRESS_LABEL = "xapi.sxm: migrating %s"
PARALLEL_DISKS = 4          # disks of one VM mirrored side by side
# the flow's entry points, for the composite's callers (benchmarks, tests)
Options = planning.Options
make_plan = planning.make_plan


def base_result(the_plan):
    vm = the_plan["vm"]
    return {"changed": False, "vm_uuid": vm["uuid"], "vm_name": vm["name_label"],
            "warnings": list(the_plan.get("warnings", []))}


def plan_step(src, dst, the_plan, check_nbd=True):
    """The plan and what the destination already holds; reads only. ``check_nbd``: open one
    export of the source (a data step under an evacuation's caps opens it under its slots)."""
    result = base_result(the_plan)
    if check_nbd:
        planning.check_nbd(src, the_plan)
    result.update(source_tree=the_plan["tree"].to_dict(), plan=planning.plan_summary(the_plan),
                  destination=planning.destination_progress(dst, the_plan))
    return result


def is_complete(dst, the_plan):
    dummy, rec = markers.destination_vm(dst, the_plan["job"])
    return markers.state_of(rec) == "complete"


def mirror_step(src, dst, the_plan, options, check_mode=False, cancel=None, on_disk=None, nbd_checked=False):
    """Mirror every planned disk's tree and sync its leaf. ``on_disk(result)`` is told of
    each disk done (the partial result of a failure). ``nbd_checked``: this process's
    plan_step already opened an export (on a real host each opening attaches a disk)."""
    result = base_result(the_plan)
    result["disks"] = []
    if is_complete(dst, the_plan):
        result["message"] = "already migrated; nothing to mirror"
        if not check_mode:
            remove_left_transients(src, the_plan, result)   # what a warm run could not remove after its cut-over
        return result
    if check_mode:
        dummy, missing = mirrored_pairs(dst, the_plan)
        result["changed"] = bool(missing)
        result["would_mirror"] = missing
        return result
    started = time.time()
    # the progress file first: it names this process, by which a waiter tells a killed job
    images = the_plan.get("memory_images", [])
    progress = Progress([src, dst], PROGRESS_LABEL % the_plan["vm"]["name_label"],
                        sum(d["bytes_to_read"] for d in the_plan["disks"] + images), options.progress_file,
                        cancel=cancel, description="xapi.sxm migration of VM %s" % the_plan["job"]).start()
    limiter = datapath.RateLimiter(options.bandwidth_limit) if options.bandwidth_limit else None
    dst_tls = planning.nbd_uses_tls(dst)
    ok = False
    try:
        if not nbd_checked:
            planning.check_nbd(src, the_plan)

        common = dict(tls=the_plan["tls"], use_vhd_maps=options.use_vhd_maps, progress=progress, limiter=limiter,
                      connections=options.nbd_connections, dst_tls=dst_tls, cancel=cancel)
        mirrors = [mirror.DiskMirror(src, dst, the_plan["tree"], disk["userdevice"], disk["destination_sr_ref"],
                                     the_plan["job"], use_cbt=options.use_cbt, **common)
                   for disk in the_plan["disks"]]
        result["stale_memory_images_removed"] = memory.remove_stale(dst, the_plan)
        result["changed"] = bool(result["stale_memory_images_removed"])
        nodes = memory.image_nodes(the_plan["tree"])
        mirrors += [memory.ImageMirror(src, dst, nodes[row["userdevice"]], row["destination_sr_ref"],
                                       the_plan["job"], **common) for row in images]
        running = the_plan["mode"] == "warm"
        failures = []
        # a running VM's disks change: only their snapshots are mirrored here, the leaves by passes
        for r, error in side_by_side(mirrors, lambda m: m.run(sync_leaf=not running), options.nbd_connections):
            if error is not None:
                failures.append(error)
                continue
            result["disks"].append(r.to_dict())
            result["changed"] = result["changed"] or r.changed
            if on_disk:
                on_disk(result)
        if failures:
            raise failures[0]
        if running:
            result.update(warm_cutover(src, dst, the_plan, options, mirrors, cancel))
            result["disks"] = [m.result.to_dict() for m in mirrors]
        else:
            # a warm run killed before its VM stopped for good left its transient snapshots
            # (the VM was halted since, or this run is cold): the synced leaves need them no more
            remove_left_transients(src, the_plan, result)
        ok = True
    finally:
        progress.finish(ok)
    for key in ("bytes_written", "bytes_read", "walk_minimum_bytes", "walk_minimum_2m_bytes", "edge_minimum_bytes",
                "written_read_back_bytes"):
        result[key] = sum(d[key] for d in result["disks"])
    # the read-back of what was written is the default verification's first half, timed apart
    # (summed over disks mirrored side by side, so it may exceed their share of data_s)
    result["timings"] = {"data_s": round(time.time() - started, 3)}
    for key in ("written_read_back_s", "written_read_back_cpu_s"):
        result["timings"][key] = round(sum(d[key] for d in result["disks"]), 3)
    return result


def remove_left_transients(src, the_plan, result):
    """The job's transient snapshots an earlier warm run left on the source, removed; the
    result says how many."""
    removed = warm.remove_transients(src, list(the_plan["tree"].vm.disks.values()), the_plan["job"])
    if removed:
        result.update(changed=True, transient_snapshots_removed=removed)


def side_by_side(disks, mirror_disk, nbd_connections):
    """[(result, None) or (None, exception)] per disk, in the plan's order, the disks
    mirrored PARALLEL_DISKS at a time (a host's fixed costs and per-connection rates are paid
    side by side), never more NBD connections than XAPI serves per host: each disk reads with
    ``nbd_connections`` and reads back what it wrote with one more. Every disk runs to its end
    even when another failed: what it did is kept for a re-run."""
    workers = max(1, min(len(disks), PARALLEL_DISKS, datapath.NBD_CONNECTIONS_MAX // (nbd_connections + 1)))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(mirror_disk, disk) for disk in disks]
        outcomes = []
        for future in futures:
            try:
                outcomes.append((future.result(), None))
            except BaseException as e:  # noqa: BLE001 - the caller raises it, after every disk ended
                outcomes.append((None, e))
    return outcomes


def each_disk(mirrors, work, nbd_connections):
    """``work(mirror)`` for every disk side by side; the first failure raised after all ended."""
    errors = [error for result, error in side_by_side(mirrors, work, nbd_connections) if error is not None]
    if errors:
        raise errors[0]


def warm_cutover(src, dst, the_plan, options, mirrors, cancel=None):
    """A running VM (warm.py): passes from transient snapshots while it runs, then the
    downtime; or, with cutover manual, a return with the destination converged and each
    disk's last transient snapshot kept as the next run's base. Otherwise the transient
    snapshots are always removed. Returns the result's warm part."""
    settings, job, tree = options.warm, the_plan["job"], the_plan["tree"]
    # a disk only the snapshots still have is done with its tree
    mirrors = [m for m in mirrors if m.userdevice in tree.vm.disks]
    leaves = [tree.vm.disks[m.userdevice] for m in mirrors]
    warm.remove_transients(src, leaves, job, keep=transient_bases(mirrors))
    passes, kept = [], ()

    def one_pass():
        if cancel is not None:
            cancel.check()
        passes.append(converge_pass(src, mirrors, tree, job, len(passes) + 1, options.nbd_connections))
    found = None
    try:
        while not passes or not warm.converged(passes, settings):
            one_pass()
        while settings.decision(time.time()) == "wait":
            # the window is not open yet: the copy kept converged meanwhile
            time.sleep(min(settings.sync_interval, settings.seconds_to_window(time.time())))
            one_pass()
        decision = settings.decision(time.time())
        if decision == "hold":
            found, kept = waiting(the_plan, passes, settings), transient_bases(mirrors)
        else:
            checked = verify_before_downtime(src, dst, the_plan, options)
            found = downtime(src, dst, the_plan, options, mirrors)
            found["warm"]["snapshots_verify_bytes_read"] = checked
    finally:
        try:
            warm.remove_transients(src, leaves, job, keep=kept)
        except XapiFailure as e:
            if found is None:
                pass     # the run's own failure is raised; the next run removes them
            else:
                # the VM moved: that stands, and the next run (or migration_cleanup) removes them
                found.setdefault("warnings", []).append(
                    "a transient snapshot could not be removed from the source (%s): the next run of this "
                    "migration removes it" % e.code)
    last = passes[-1]["bytes_written"]
    if last > settings.cutover_bytes:
        found.setdefault("warnings", []).append(
            "the passes did not converge below cutover_bytes (%d bytes): the last wrote %d bytes, and the "
            "downtime carries what the guest wrote since" % (settings.cutover_bytes, last))
    found["warm"].update(passes=passes, cutover=settings.cutover, decision=decision,
                         converged=last <= settings.cutover_bytes)
    return found


def verify_before_downtime(src, dst, the_plan, options):
    """The snapshot nodes and memory images compared on both pools while the VM runs (the
    downtime compares records only). Returns the bytes read."""
    if not options.verify:
        return 0
    pairs, dummy = mirrored_pairs(dst, the_plan)
    return verification.verify_snapshots(src, dst, the_plan["tree"], pairs, the_plan["tls"],
                                         planning.nbd_uses_tls(dst), options.verify_depth)


def transient_bases(mirrors):
    """The uuids of the transient snapshots the working disks hold."""
    return {m.held.disk.uuid for m in mirrors if m.held is not None and m.held.marker.startswith("transient:")}


def waiting(the_plan, passes, settings):
    """The result of a run that holds the cut-over (manual, or a closed window): converged,
    the VM still running on the source."""
    why = "" if settings.window is None else "the cut-over window closed at %s; " % time.strftime(
        warm.TIME_FORMAT, time.gmtime(settings.window[1]))
    line = ("%sVM %s runs on the source; its destination copy is converged (the last pass wrote %d bytes). "
            "Run again with cutover now (role: sxm_cutover: now) or a new window to cut it over; a run "
            "with manual brings it up to date again" % (why, the_plan["vm"]["name_label"],
                                                        passes[-1]["bytes_written"]))
    return {"warm": {"waiting": True}, "cutover_pending": True, "next_step": line}


def written_and_read(mirrors):
    return (sum(m.result.bytes_written for m in mirrors), sum(m.result.bytes_read for m in mirrors))


def converge_pass(src, mirrors, tree, job, number, nbd_connections):
    """One pass: each running disk's W brought to a new transient snapshot; the previous one
    goes. Returns the pass's figures."""
    started = time.time()
    written, read = written_and_read(mirrors)

    def one(m):
        previous = m.held.disk if m.held.marker.startswith("transient:") else None
        m.sync_to(warm.take_transient(src, tree.vm.disks[m.userdevice], job), mirror.transient_marker)
        if previous is not None:
            src.call("VDI.destroy", previous.vdi_ref)
    each_disk(mirrors, one, nbd_connections)
    now_written, now_read = written_and_read(mirrors)
    return {"pass": number, "bytes_written": now_written - written, "bytes_read": now_read - read,
            "seconds": round(time.time() - started, 3)}


def downtime(src, dst, the_plan, options, mirrors):
    """The one window the VM is stopped, in this one call: shutdown, the final delta from the
    halted disks (each written block read back), metadata, the trees compared, the destination
    started. A failure after the shutdown starts the source again and leaves the destination
    blocked for a re-run."""
    vm_ref, job, tree = the_plan["vm_ref"], the_plan["job"], the_plan["tree"]
    stop_requested = time.time()
    how = warm.shut_down(src, vm_ref, the_plan["vm"]["name_label"], options.warm)
    halted = time.time()
    written, read = written_and_read(mirrors)
    try:
        each_disk(mirrors, lambda m: m.sync_to(tree.vm.disks[m.userdevice], mirror.leaf_marker),
                  options.nbd_connections)
        final_written, final_read = written_and_read(mirrors)
        imported = metadata_step(src, dst, the_plan, options)
        dst_ref, dst_rec = markers.destination_vm(dst, job)
        found = verification.verify_records(dst, tree, dst_ref, required_pairs(dst, the_plan))
        markers.set_key(dst, "VM", dst_ref, markers.VERIFIED, found.pop("fingerprint"))
        markers.set_key(dst, "VM", dst_ref, markers.STATE, "verified")
        cutover.complete(dst, dst_ref, dst.call("VM.get_record", dst_ref), False)
        dst.call("VM.start", dst_ref, False, False)
    except BaseException as failure:
        # the source first: its guest is down for as long as this takes
        try:
            warm.restart_source(src, vm_ref)
            back = "the source VM was started again"
        except Exception as e:  # noqa: BLE001 - said in the error raised
            back = "starting the source VM again failed too (%s): start it by hand" % e
        cutover.reblock(dst, job)
        if isinstance(failure, SxmError):
            failure.message += " (inside the downtime: %s, the destination left blocked; run again)" % back
        raise
    running = time.time()
    if options.source_disposition == "destroy":
        proof_for_destroy(src, dst, the_plan, dst_ref)
    found.update(imported)
    found["warm"] = {"downtime_s": round(running - stop_requested, 3), "shutdown_s": round(halted - stop_requested, 3),
                     "shutdown": how, "final_delta_bytes": final_written - written,
                     "final_delta_read_bytes": final_read - read}
    found["downtime_s"] = found["warm"]["downtime_s"]
    return found


def proof_for_destroy(src, dst, the_plan, dst_ref):
    """A leaf synced from CBT's changed blocks alone has no whole fingerprint, which destroy
    needs to prove the source unwritten since: read the halted source's disks once, now the
    destination runs (never inside the downtime), and the cut-over compares with that."""
    dummy, content = verification.parse_fingerprint(dst.call("VM.get_other_config", dst_ref).get(markers.VERIFIED))
    if content != verification.PARTIAL:
        return
    leaves = verification.leaf_fingerprints(src, the_plan["tree"], the_plan["tls"])
    markers.set_key(dst, "VM", dst_ref, markers.VERIFIED, verification.fingerprint(the_plan["tree"], leaves))
    the_plan["leaf_fingerprints"] = leaves


def mirrored_pairs(dst, the_plan):
    """{source VDI uuid: destination VDI uuid} of every disk and memory image mirrored, and
    what is not yet."""
    pairs, missing = mirror.mirrored_pairs(dst, the_plan)
    images, images_missing = memory.mirrored_pairs(dst, the_plan)
    pairs.update(images)
    return pairs, missing + images_missing


def required_pairs(dst, the_plan):
    pairs, missing = mirrored_pairs(dst, the_plan)
    if missing:
        raise StateError("not every disk is mirrored yet (%s): run vdi_mirror first" % ", ".join(missing[:5]))
    return pairs


def destination_matches(dst, dst_ref, tree, pairs):
    """Whether the destination VM's tree equals the source's and its disks are the mirrors."""
    dst_tree = treemod.discover(dst, dst_ref)
    if verification.compare_trees(tree, dst_tree):
        return False
    by_uuid = {n.uuid: n for n in dst_tree.nodes.values()}
    for node in tree.nodes.values():
        for device, disk in node.disks.items():
            if by_uuid[node.uuid].disks[device].uuid != pairs.get(disk.uuid):
                return False
        image = by_uuid[node.uuid].memory
        if node.memory is not None and (image is None or image.uuid != pairs.get(node.memory.uuid)):
            return False
    return True


def metadata_step(src, dst, the_plan, options, check_mode=False):
    """Import the VM and its snapshots (born marked and blocked) unless the destination
    already holds them as they are on the source, then restore the snapshot times."""
    started = time.time()
    result = base_result(the_plan)
    job, tree = the_plan["job"], the_plan["tree"]
    dst_ref, dst_rec = markers.destination_vm(dst, job)
    if markers.state_of(dst_rec) == "complete":
        result.update(destination_vm_uuid=job, message="already migrated; nothing to import")
        return result
    pairs = required_pairs(dst, the_plan) if not check_mode else mirrored_pairs(dst, the_plan)[0]
    tar_bytes, result["network_mapping"] = metadata.exported_metadata(src, dst, job, options.network_map)
    if dst_ref is None or not destination_matches(dst, dst_ref, tree, pairs):
        result["changed"] = True
        if check_mode:
            metadata.import_metadata(dst, tar_bytes, {}, job, dry_run=True)
            return result
        dst_ref = metadata.import_vm(dst, tar_bytes, pairs, job)
    if check_mode:
        return result
    rows, changed = metadata.snapshot_time_fixups(dst, tree, pairs)
    cbt_warnings, cbt_changed = metadata.cbt_fixups(dst, tree, pairs)
    result["warnings"] += cbt_warnings
    result["changed"] = result["changed"] or changed or cbt_changed
    result["snapshot_time_not_kept"] = rows
    if rows:
        result["warnings"].append("%d snapshot disk(s) keep the destination's snapshot_time; see "
                                  "snapshot_time_not_kept" % len(rows))
    result["destination_vm_uuid"] = job
    result["timings"] = {"metadata_s": round(time.time() - started, 3)}
    return result


def verify_step(src, dst, the_plan, check_mode=False, read_content=True, force=False, progress_file=None,
                cancel=None, depth="sample"):
    """Compare both trees (and, with ``read_content``, the disks' bytes to ``depth``: see
    verify.py) and record the verified source state on the destination VM.
    ``progress_file`` gets the bytes read on both pools, as the mirror's does."""
    started = time.time()
    result = base_result(the_plan)
    job, tree = the_plan["job"], the_plan["tree"]
    dst_ref, dst_rec = markers.destination_vm(dst, job)
    if dst_rec is None:
        raise StateError("the VM is not on the destination yet: run vm_metadata first")
    state = markers.state_of(dst_rec)
    records, content = verification.parse_fingerprint(dst_rec["other_config"].get(markers.VERIFIED))
    current = records == verification.records_fingerprint(tree) and (content != "unverified" or not read_content)
    result["destination_vm_uuid"] = job
    if state in ("verified", "complete") and current and not force:
        result["destination_tree"] = treemod.discover(dst, dst_ref).to_dict()
        result["message"] = "already verified"
        return result
    result["changed"] = True
    if check_mode:
        return result
    pairs = required_pairs(dst, the_plan)
    if read_content:
        to_read = 2 * sum(d.virtual_size for node in tree.carried_snapshots() + [tree.vm] for d in node.disks.values())
        if depth != "full":
            to_read = int(to_read * verification.SAMPLE_FRACTION)
        progress = Progress([], "", to_read, progress_file, cancel=cancel)
        progress.set_phase("verify")
        ok = False
        try:
            found = verification.verify(src, dst, tree, dst_ref, pairs, the_plan["tls"], planning.nbd_uses_tls(dst),
                                        progress=progress.add, depth=depth)
            ok = True
        finally:
            progress.finish(ok)
    else:
        dst_tree = treemod.discover(dst, dst_ref)
        problems = verification.compare_trees(tree, dst_tree)
        if problems:
            raise StateError("the destination tree differs: " + "; ".join(problems))
        found = {"destination_tree": dst_tree.to_dict(), "verified_disks": 0,
                 "fingerprint": "records:%s content:unverified" % verification.records_fingerprint(tree)}
    markers.set_key(dst, "VM", dst_ref, markers.VERIFIED, found.pop("fingerprint"))
    if state != "complete":
        markers.set_key(dst, "VM", dst_ref, markers.STATE, "verified")
    result.update(found)
    result["timings"] = {"verify_s": round(time.time() - started, 3)}
    return result


def cutover_step(src, dst, the_plan, source_disposition, check_mode=False, cancel=None):
    """Make the verified destination VM startable and complete, then dispose of the source."""
    result = base_result(the_plan)
    dst_ref, dst_rec = cutover.verified_destination(dst, the_plan)
    result["changed"] = cutover.complete(dst, dst_ref, dst_rec, check_mode)
    if cancel is not None:
        cancel.check()       # never a disposition after the job was cancelled
    result["changed"] = cutover.apply_disposition(src, dst, the_plan, dst_rec, source_disposition,
                                                  check_mode) or result["changed"]
    result.update(destination_vm_uuid=the_plan["job"], source_disposition=source_disposition)
    return result


def migrate(src, dst, options, check_mode=False, cancel=None, partial=None):
    """Every step in one process (the vm_migrate module). ``partial`` (a dict) is kept up
    to date with what is done, for the result of a failure."""
    started = time.time()
    the_plan = make_plan(src, dst, options)
    steps = [plan_step(src, dst, the_plan)]
    # a network that cannot be mapped is found before any byte moves
    metadata.exported_metadata(src, dst, the_plan["job"], options.network_map)
    partial = partial if partial is not None else {}

    def done(step):
        partial.update(merge_results(steps + [step]))
    steps.append(mirror_step(src, dst, the_plan, options, check_mode, cancel, on_disk=done, nbd_checked=True))
    done(steps[-1])
    if steps[-1].get("cutover_pending"):
        # a manual cut-over: the VM runs on, its copy converged; a later run cuts it over
        return merge_results(steps)
    steps.append(metadata_step(src, dst, the_plan, options, check_mode))
    if not check_mode:
        steps.append(verify_step(src, dst, the_plan, read_content=options.verify, depth=options.verify_depth))
        steps.append(cutover_step(src, dst, the_plan, options.source_disposition, cancel=cancel))
    result = merge_results(steps)
    result.setdefault("timings", {})["total_s"] = round(time.time() - started, 3)
    return result
