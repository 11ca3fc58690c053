// Conformance checks: Xen Orchestra's own XAPI client, the npm package `xen-api` (pinned in
// package.json, unmodified), used the way Xen Orchestra uses it, against a simulated pool.
//
//   node conformance.mjs <pools.json> <check>
//
// runs one check against pool 0 and prints one JSON line on stdout:
//   {"check", "ok", "observations", "calls", "http", "warnings", "error"?}
// exit 0 when the check passed, 1 when it failed, 2 on a usage error.
//
// `calls` is every XAPI call the client made (from the client's own debug log), as
// "method", "method -> ERROR_CODE" or "method -> !transport error"; `http` is every HTTP
// request it sent (from node's and undici's diagnostics channels, session ids redacted).
// Nothing in the client is replaced or patched: those are passive observers.
//
// TLS: xen-api 4.7.6 has no option for a CA (only `allowUnauthorized`); its undici Agent
// (RPC, getResource) and node's https (putResource) both verify against node's default
// trust store, which NODE_EXTRA_CA_CERTS extends. NODE_EXTRA_CA_CERTS is read once, when the
// process starts, so this program re-runs itself in a child process with it set to the
// pool's `ca_file` (and, for the `tls_refused` check, unset or set to another pool's
// certificate). `allowUnauthorized` is false in every check except that check's control.

import assert from 'node:assert/strict'
import crypto from 'node:crypto'
import diagnosticsChannel from 'node:diagnostics_channel'
import fs from 'node:fs'
import { spawnSync } from 'node:child_process'
import { Readable } from 'node:stream'
import { fileURLToPath } from 'node:url'

// @xen-orchestra/log is xen-api's own logger (its copy hoisted by the lockfile): configure() is
// how an application such as xo-server receives the client's logs
import { configure } from '@xen-orchestra/log/configure'
import { LEVELS } from '@xen-orchestra/log/levels'
import { createClient } from 'xen-api'

const SELF = fileURLToPath(import.meta.url)
const CHILD_ENV = 'SXM_XO_CONFORMANCE_CHILD'
const MiB = 1024 * 1024
const NULL_REF = 'OpaqueRef:NULL'
const BOGUS_REF = 'OpaqueRef:00000000-dead-beef-0000-000000000000'
const CHECK_DEADLINE_MS = 45e3
const WAIT_MS = 15e3
const TLS_ERROR_CODES = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_SIGNATURE_FAILURE',
  'CERT_UNTRUSTED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
])

// ---------------------------------------------------------------------------------------------
// Observers: the client's debug log, HTTP diagnostics channels, console warnings

const calls = [] // XAPI calls {method, args, outcome, result, error}, in the order started
const callsById = new Map()
const http = []
const warnings = []
const eventLoopListeners = new Set() // fn(error) called when the client's event loop reports one

const redact = s => String(s).replace(/(session_id=)[^&\s]+/g, '$1<session>')

function summarize(value, depth = 0) {
  if (typeof value === 'string') {
    if (value === '* session id *' || value === '* obfuscated *') return value
    if (value.startsWith('OpaqueRef:')) return value === NULL_REF ? NULL_REF : 'OpaqueRef'
    return value.length > 60 ? value.slice(0, 57) + '...' : value
  }
  if (Array.isArray(value)) {
    return depth > 1 ? `[${value.length}]` : value.map(v => summarize(v, depth + 1))
  }
  if (value !== null && typeof value === 'object') {
    if (depth > 1) return '{...}'
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, summarize(v, depth + 1)]))
  }
  return value
}

configure(log => {
  if (log.namespace !== 'xen-api') {
    if (log.level >= LEVELS.WARN) warnings.push(`${log.namespace}: ${redact(log.message)}`)
    return
  }
  const m = /^\S+: (\S+) (started|succeeded after|failed after)/.exec(log.message)
  if (m === null) return
  const [, method, what] = m
  const { callId } = log.data ?? {}
  if (what === 'started') {
    const entry = { method, args: log.data.args, outcome: undefined }
    callsById.set(callId, entry)
    calls.push(entry)
    return
  }
  const entry = callsById.get(callId)
  if (entry === undefined) return
  callsById.delete(callId)
  if (what === 'succeeded after') {
    entry.outcome = 'ok'
    entry.result = log.data.result
  } else {
    const { error } = log.data
    entry.outcome = error?.code !== undefined ? error.code : '!' + (error?.message ?? String(error))
    entry.error = error
  }
})

function callList() {
  return calls.map(({ method, outcome }) =>
    outcome === 'ok' ? method : outcome === undefined ? method + ' -> (pending)' : `${method} -> ${outcome}`
  )
}

const httpByRequest = new WeakMap()
function noteHttp(request, entry) {
  httpByRequest.set(request, entry)
  http.push(entry)
}
function headerValue(headers, name) {
  if (Array.isArray(headers)) {
    for (let i = 0; i < headers.length; i += 2) {
      if (String(headers[i]).toLowerCase() === name) return String(headers[i + 1])
    }
    return undefined
  }
  if (typeof headers === 'string') {
    const m = new RegExp('^' + name + ':\\s*(.*)$', 'im').exec(headers)
    return m === null ? undefined : m[1].trim()
  }
  return headers?.[name]
}
diagnosticsChannel.subscribe('undici:request:create', ({ request }) => {
  noteHttp(request, {
    via: 'undici',
    method: request.method,
    path: redact(request.path),
    content_type: headerValue(request.headers, 'content-type'),
    status: undefined,
  })
})
diagnosticsChannel.subscribe('undici:request:headers', ({ request, response }) => {
  const entry = httpByRequest.get(request)
  if (entry !== undefined) {
    entry.status = response.statusCode
    const headers = response.headers ?? []
    const get = name => {
      for (let i = 0; i < headers.length; i += 2) {
        if (String(headers[i]).toLowerCase() === name) return String(headers[i + 1])
      }
    }
    entry.response_content_type = get('content-type')
    entry.response_content_length = get('content-length')
    entry.response_transfer_encoding = get('transfer-encoding')
  }
})
diagnosticsChannel.subscribe('undici:request:error', ({ request, error }) => {
  const entry = httpByRequest.get(request)
  if (entry !== undefined) entry.error = error?.code ?? error?.message
})
// node publishes http.client.request.start when the request has been written, which may be
// after the response arrived (a server that answers once it has read the body): either
// channel may come first
function nodeHttpEntry(request) {
  let entry = httpByRequest.get(request)
  if (entry === undefined) {
    entry = { via: 'node:https', method: request.method, path: redact(request.path), status: undefined }
    noteHttp(request, entry)
  }
  entry.content_length = request.getHeader('content-length')
  entry.transfer_encoding = request.getHeader('transfer-encoding')
  return entry
}
diagnosticsChannel.subscribe('http.client.request.start', ({ request }) => {
  nodeHttpEntry(request)
})
diagnosticsChannel.subscribe('http.client.response.finish', ({ request, response }) => {
  const entry = nodeHttpEntry(request)
  entry.status = response.statusCode
  entry.response_content_length = response.headers['content-length']
  entry.response_connection = response.headers.connection
})
function httpList() {
  // the JSON-RPC POSTs are listed in `calls`; keep only their count here
  const rpc = http.filter(h => h.method === 'POST' && /^\/(jsonrpc|xmlrpc)$/.test(h.path))
  const other = http.filter(h => !rpc.includes(h))
  const byPath = {}
  for (const h of rpc) {
    const key = `POST ${h.path} ${h.status ?? h.error ?? 'no answer'}`
    byPath[key] = (byPath[key] ?? 0) + 1
  }
  return [...Object.entries(byPath).map(([k, n]) => `${k} x${n}`), ...other]
}

// the client reports event-loop trouble only through console.warn and 'eventFetchingError':
// keep what it says (and still print it), so that a check fails with the server's answer
// instead of waiting for its timeout
const consoleWarn = console.warn.bind(console)
console.warn = (...args) => {
  const [where, error] = args
  warnings.push(
    args.map(a => (a instanceof Error ? `${a.code ?? a.name}: ${a.message}` : redact(typeof a === 'string' ? a : JSON.stringify(summarize(a))))).join(' ')
  )
  if ((where === '_watchEvents' || where === '_watchEventsLegacy') && error !== undefined) {
    for (const fn of eventLoopListeners) fn(wrapLoopError(where, error))
  }
  consoleWarn(...args)
}
function wrapLoopError(where, error) {
  const e = new Error(`event loop (${where}) failed: ${error?.code ?? ''} ${error?.message ?? error}`)
  e.code = error?.code
  e.params = error?.params
  e.call = error?.call
  e.cause = error
  return e
}

// ---------------------------------------------------------------------------------------------
// Helpers

class CheckFailure extends Error {}
function check(condition, message, details) {
  if (!condition) {
    const e = new CheckFailure(message)
    e.details = details
    throw e
  }
}

function timeout(ms, what) {
  let timer
  const promise = new Promise((resolve, reject) => {
    timer = setTimeout(() => reject(new CheckFailure(`timed out after ${ms} ms waiting for ${what}`)), ms)
  })
  promise.cancel = () => clearTimeout(timer)
  return promise
}

// waits for `promise` or fails on a timeout or on an error of the client's event loop
async function wait(xapi, promise, what, ms = WAIT_MS) {
  const t = timeout(ms, what)
  let onLoopError
  const loop = new Promise((resolve, reject) => {
    onLoopError = error => reject(error?.message?.startsWith('event loop') ? error : wrapLoopError('event.from', error))
  })
  eventLoopListeners.add(onLoopError)
  xapi?.on('eventFetchingError', onLoopError)
  try {
    return await Promise.race([promise, t, loop])
  } finally {
    t.cancel()
    eventLoopListeners.delete(onLoopError)
    xapi?.removeListener('eventFetchingError', onLoopError)
  }
}

// resolves once the cached object for `ref` satisfies `predicate` (undefined = absent)
function objectState(xapi, ref, predicate) {
  return new Promise(resolve => {
    const test = () => {
      const object = xapi.getObjectByRef(ref, undefined)
      if (predicate(object)) {
        xapi.objects.removeListener('add', test)
        xapi.objects.removeListener('update', test)
        xapi.objects.removeListener('remove', test)
        resolve(object)
        return true
      }
      return false
    }
    if (!test()) {
      xapi.objects.on('add', test)
      xapi.objects.on('update', test)
      xapi.objects.on('remove', test)
    }
  })
}
const waitObject = (xapi, ref, predicate, what) => wait(xapi, objectState(xapi, ref, predicate), what)

async function poll(fn, what, ms = 5e3, every = 100) {
  const end = Date.now() + ms
  let last
  while (true) {
    last = await fn()
    if (last) return last
    if (Date.now() > end) throw new CheckFailure(`timed out after ${ms} ms waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, every))
  }
}

async function expectXapiError(promise, code, what) {
  let error
  try {
    await promise
  } catch (e) {
    error = e
  }
  check(error !== undefined, `${what}: expected the XAPI error ${code}, got a success`)
  check(
    error.code === code,
    `${what}: expected the XAPI error ${code}, got ${error.code ?? ''} ${error.message}`,
    { code: error.code, params: error.params }
  )
  check(Array.isArray(error.params), `${what}: the error has no params array`)
  return error
}

function makeClient(pool, opts = {}) {
  return createClient({
    url: pool.url,
    auth: { user: pool.username, password: pool.password },
    allowUnauthorized: false,
    ...opts,
  })
}

const sha256 = data => crypto.createHash('sha256').update(data).digest('hex')
const label = what => `xo-conformance ${what} ${crypto.randomBytes(4).toString('hex')}`

// a halted VM record as Xen Orchestra's VM_create sends it (ints as JSON numbers)
function vmRecord(nameLabel) {
  return {
    name_label: nameLabel,
    name_description: 'made by the xen-api conformance checks',
    user_version: 1,
    is_a_template: false,
    affinity: NULL_REF,
    memory_static_max: 256 * MiB,
    memory_dynamic_max: 256 * MiB,
    memory_dynamic_min: 256 * MiB,
    memory_static_min: 256 * MiB,
    VCPUs_params: {},
    VCPUs_max: 1,
    VCPUs_at_startup: 1,
    actions_after_shutdown: 'destroy',
    actions_after_reboot: 'restart',
    actions_after_crash: 'restart',
    PV_bootloader: '',
    PV_kernel: '',
    PV_ramdisk: '',
    PV_args: '',
    PV_bootloader_args: '',
    PV_legacy_args: '',
    HVM_boot_policy: 'BIOS order',
    HVM_boot_params: { order: 'cd' },
    HVM_shadow_multiplier: 1,
    platform: {},
    PCI_bus: '',
    other_config: {},
    recommendations: '',
    xenstore_data: {},
    ha_always_run: false,
    ha_restart_priority: '',
    tags: [],
    blocked_operations: {},
    protection_policy: NULL_REF,
    is_snapshot_from_vmpp: false,
    appliance: NULL_REF,
    start_delay: 0,
    shutdown_delay: 0,
    order: 0,
    suspend_SR: NULL_REF,
    version: 0,
    generation_id: '',
    hardware_platform_version: 0,
    has_vendor_device: false,
    reference_label: '',
    domain_type: 'hvm',
    NVRAM: {},
  }
}

// a VDI record as Xen Orchestra's VDI_create sends it (sm_config left out unless asked)
function vdiRecord(nameLabel, SR, size) {
  return {
    name_label: nameLabel,
    name_description: 'made by the xen-api conformance checks',
    other_config: {},
    read_only: false,
    sharable: false,
    SR,
    tags: [],
    type: 'user',
    virtual_size: size,
    xenstore_data: {},
  }
}

// connect, and wait for the initial load of the object cache
async function connected(xapi) {
  await xapi.connect()
  check(xapi.status === 'connected', `status is ${xapi.status} after connect()`)
  await wait(xapi, xapi.objectsFetched, 'objectsFetched (initial load of the object cache)')
  return xapi
}

// ---------------------------------------------------------------------------------------------
// Checks: each gets (pool, pools, obs) and fills `obs` with observations

const checks = {
  async connect(pool, _pools, obs) {
    const xapi = makeClient(pool)
    const seen = []
    xapi.on('connected', () => seen.push('connected'))
    xapi.on('disconnected', () => seen.push('disconnected'))
    xapi.on('sessionId', () => seen.push('sessionId'))
    check(xapi.status === 'disconnected', `status before connect() is ${xapi.status}`)
    await xapi.connect()
    obs.status_after_connect = xapi.status
    check(xapi.status === 'connected', `status after connect() is ${xapi.status}`)
    const sessionId = xapi.sessionId
    check(typeof sessionId === 'string' && sessionId.startsWith('OpaqueRef:'), `session id ${sessionId}`)
    check(xapi.pool !== null && xapi.pool.$type === 'pool', 'xapi.pool is not set after connect()')
    const pools = await xapi.call('pool.get_all')
    check(pools.length === 1 && pools[0] === xapi.pool.$ref, 'xapi.pool.$ref is not the pool', { pools })
    obs.pool_name_label = xapi.pool.name_label
    // as XO does once connected: wait for the initial load of the object cache
    await wait(xapi, xapi.objectsFetched, 'objectsFetched')
    const listMethods = calls.find(c => c.method === 'system.listMethods')
    obs.list_methods = listMethods === undefined ? 'not called' : listMethods.outcome
    if (Array.isArray(listMethods?.result)) {
      const classes = listMethods.result
        .filter(m => m.endsWith('.get_all_records'))
        .map(m => m.slice(0, m.indexOf('.')))
      obs.classes_from_list_methods = classes.length
    }
    await xapi.disconnect()
    obs.status_after_disconnect = xapi.status
    check(xapi.status === 'disconnected', `status after disconnect() is ${xapi.status}`)
    obs.events = seen
    check(seen.includes('connected') && seen.includes('disconnected'), 'connected/disconnected not emitted', {
      seen,
    })

    // disconnect() sends session.logout without waiting: the session must become invalid
    await poll(async () => {
      const probe = makeClient(pool, { auth: { sessionId }, watchEvents: false })
      try {
        await probe.connect()
        await probe.disconnect()
        return false
      } catch (error) {
        return error.code === 'SESSION_INVALID'
      }
    }, 'the logged-out session to answer SESSION_INVALID')
    obs.session_invalid_after_disconnect = true

    // wrong password
    const bad = makeClient(pool, { auth: { user: pool.username, password: 'not the password' } })
    const error = await expectXapiError(bad.connect(), 'SESSION_AUTHENTICATION_FAILED', 'login with a wrong password')
    obs.wrong_password = { code: error.code, params: error.params.length }
    check(bad.status === 'disconnected', `status after a failed login is ${bad.status}`)
  },

  async objects(pool, _pools, obs) {
    // a VM with a disk and a VIF, made before the client under test connects, so that its
    // initial load must bring it in
    const setup = makeClient(pool, { watchEvents: false })
    await setup.connect()
    const poolRef = setup.pool.$ref
    const sr = setup.pool.default_SR
    const network = Object.keys(await setup.call('network.get_all_records'))[0]
    const vm = await setup.call('VM.create', vmRecord(label('objects VM')))
    const vdi = await setup.call('VDI.create', vdiRecord(label('objects VDI'), sr, 4 * MiB))
    const vbd = await setup.call('VBD.create', {
      VM: vm,
      VDI: vdi,
      userdevice: '0',
      bootable: true,
      mode: 'RW',
      type: 'Disk',
      unpluggable: false,
      empty: false,
      other_config: {},
      qos_algorithm_type: '',
      qos_algorithm_params: {},
    })
    const vif = await setup.call('VIF.create', {
      device: '0',
      network,
      VM: vm,
      MAC: '',
      MTU: 1500,
      other_config: {},
      qos_algorithm_type: '',
      qos_algorithm_params: {},
      locking_mode: 'network_default',
      ipv4_allowed: [],
      ipv6_allowed: [],
    })
    try {
      const xapi = await connected(makeClient(pool))
      const warningsBefore = warnings.length
      const all = Object.values(xapi.objects.all)
      const byType = {}
      for (const o of all) byType[o.$type] = (byType[o.$type] ?? 0) + 1
      obs.cached_types = byType

      // the cache must be exactly what get_all_records answers, for every class XO shows
      for (const type of ['pool', 'host', 'SR', 'PBD', 'VDI', 'VBD', 'VM', 'VIF', 'network', 'PIF']) {
        const records = await setup.call(`${type}.get_all_records`)
        const cached = xapi.objects.indexes.type?.[type] ?? {}
        const cachedRefs = Object.values(cached)
          .map(o => o.$ref)
          .sort()
        check(
          JSON.stringify(cachedRefs) === JSON.stringify(Object.keys(records).sort()),
          `the cached ${type} objects are not those of ${type}.get_all_records`,
          { cached: cachedRefs.length, server: Object.keys(records).length }
        )
        for (const [ref, record] of Object.entries(records)) {
          const o = xapi.getObjectByRef(ref)
          check(o.$type === type && o.$ref === ref, `${ref}: $type ${o.$type}`)
          if (record.uuid !== undefined) {
            check(o.$id === record.uuid && o.uuid === record.uuid, `${type} ${ref}: $id is not the uuid`)
            check(xapi.getObjectByUuid(record.uuid) === o, `getObjectByUuid(${type} uuid) is another object`)
            check(xapi.getObject(record.uuid) === o && xapi.getObject(ref) === o, `getObject(${type})`)
          }
          check(Object.isFrozen(o), `${type} object is not frozen`)
        }
      }

      // the pool, its master, the default SR
      const p = xapi.pool
      check(p.$ref === poolRef && xapi.getObject(p.uuid) === p, 'xapi.pool is not the cached pool')
      const master = p.$master
      check(master !== undefined && master.$type === 'host', 'pool.$master does not resolve to the host')
      check(master.address !== undefined && master.name_label !== undefined, 'host record lacks address/name_label')
      const defaultSr = p.$default_SR
      check(defaultSr?.$type === 'SR', 'pool.$default_SR does not resolve to an SR')
      obs.host = { name_label: master.name_label, address: master.address }
      obs.srs = Object.values(xapi.objects.indexes.type.SR).map(s => `${s.name_label} (${s.type})`)
      check(defaultSr.$PBDs.length >= 1 && defaultSr.$PBDs.every(pbd => pbd?.$host === master), 'SR.$PBDs.$host')
      obs.networks = Object.values(xapi.objects.indexes.type.network).map(n => n.name_label)
      check(master.$PIFs.every(pif => pif?.$type === 'PIF' && pif.$network?.$type === 'network'), 'host.$PIFs')

      // the VM made above, with its links resolved from the cache
      const cachedVm = xapi.getObjectByRef(vm)
      check(cachedVm.$type === 'VM' && cachedVm.is_a_template === false, 'VM record')
      check(cachedVm.$VBDs.length === 1 && cachedVm.$VBDs[0].$ref === vbd, 'VM.$VBDs')
      check(cachedVm.$VBDs[0].$VDI?.$ref === vdi && cachedVm.$VBDs[0].$VDI.$SR === defaultSr, 'VBD.$VDI.$SR')
      check(cachedVm.$VIFs.length === 1 && cachedVm.$VIFs[0].$ref === vif, 'VM.$VIFs')
      check(cachedVm.$VIFs[0].$network?.$ref === network, 'VIF.$network')
      check(typeof cachedVm.$callAsync === 'function' && typeof cachedVm.set_name_label === 'function', 'helpers')
      const dom0 = Object.values(xapi.objects.indexes.type.VM).filter(v => v.is_control_domain)
      obs.control_domains = dom0.length
      check(dom0.length === 1 && dom0[0].$resident_on === master && master.$control_domain === dom0[0],
        'one control domain per host, resident on it')
      obs.default_templates = Object.values(xapi.objects.indexes.type.VM)
        .filter(v => v.is_a_template && v.is_default_template).length
      const metricsOfVm = cachedVm.$metrics
      check(metricsOfVm?.$type === 'VM_metrics' && master.$metrics?.$type === 'host_metrics',
        'VM.$metrics and host.$metrics resolve')

      // a class that listMethods announces must be fetchable (XO only warns, we fail)
      const refreshErrors = warnings.filter(w => w.startsWith('_refreshCachedRecords'))
      check(refreshErrors.length === 0, 'get_all_records failed for classes that system.listMethods lists', {
        refreshErrors,
      })
      check(warnings.length === warningsBefore, 'the client warned', { warnings: warnings.slice(warningsBefore) })
      await xapi.disconnect()
    } finally {
      await setup.call('VM.destroy', vm).catch(() => {})
      await setup.call('VDI.destroy', vdi).catch(() => {})
      await setup.disconnect()
    }
  },

  async call(pool, _pools, obs) {
    const xapi = makeClient(pool, { watchEvents: false })
    await xapi.connect()
    try {
      const vms = await xapi.call('VM.get_all_records')
      check(vms !== null && typeof vms === 'object' && !Array.isArray(vms), 'VM.get_all_records is not a map')
      check(Object.keys(vms).every(ref => ref.startsWith('OpaqueRef:')), 'VM.get_all_records keys are not refs')
      obs.vms = Object.keys(vms).length

      const pools = await xapi.call('pool.get_all_records')
      const [poolRef] = Object.keys(pools)
      check(Object.keys(pools).length === 1 && poolRef === xapi.pool.$ref, 'pool.get_all_records')
      const hosts = await xapi.call('host.get_all')
      check(hosts.length === 1 && hosts[0] === pools[poolRef].master, 'host.get_all / pool.master')
      const host = await xapi.getRecord('host', hosts[0])
      check(host.$type === 'host' && host.$ref === hosts[0] && typeof host.uuid === 'string', 'getRecord(host)')
      const byUuid = await xapi.getRecordByUuid('host', host.uuid)
      check(byUuid.$ref === host.$ref, 'getRecordByUuid(host)')
      const nameLabel = await xapi.getField('host', host.$ref, 'name_label')
      check(nameLabel === host.name_label, 'getField(host, name_label)')
      const srs = await xapi.getAllRecords('SR')
      check(srs.length >= 1 && srs.every(sr => sr.$type === 'SR'), 'getAllRecords(SR)')
      const defaultSr = await xapi.call('pool.get_default_SR', poolRef)
      check(srs.some(sr => sr.$ref === defaultSr), 'pool.get_default_SR is not an SR')
      obs.srs = srs.length
      obs.host = host.name_label

      // a write through call(), read back, and reset
      const description = label('call')
      const before = pools[poolRef].name_description
      await xapi.setField('pool', poolRef, 'name_description', description)
      check((await xapi.call('pool.get_name_description', poolRef)) === description, 'pool.set_name_description')
      await xapi.call('pool.set_name_description', poolRef, before)

      // XAPI errors, as the client turns them into XapiError (code, params)
      let e = await expectXapiError(xapi.call('VM.get_record', BOGUS_REF), 'HANDLE_INVALID', 'VM.get_record(bogus)')
      check(e.params[0] === 'VM' && e.params[1] === BOGUS_REF, 'HANDLE_INVALID params', { params: e.params })
      check(e.call?.method === 'VM.get_record', 'error.call.method')
      obs.handle_invalid = e.params
      e = await expectXapiError(xapi.call('VM.no_such_method'), 'MESSAGE_METHOD_UNKNOWN', 'VM.no_such_method')
      check(e.params[0] === 'VM.no_such_method', 'MESSAGE_METHOD_UNKNOWN params', { params: e.params })
      obs.method_unknown = e.params
      e = await expectXapiError(
        xapi.call('pool.set_name_description', poolRef),
        'MESSAGE_PARAMETER_COUNT_MISMATCH',
        'pool.set_name_description with one argument missing'
      )
      obs.parameter_count_mismatch = e.params
      e = await expectXapiError(
        xapi.call('VM.create', { name_label: 'missing fields' }),
        'FIELD_TYPE_ERROR',
        'VM.create with a record lacking required fields'
      )
      obs.field_type_error = e.params
    } finally {
      await xapi.disconnect()
    }
  },

  async callAsync(pool, _pools, obs) {
    const xapi = await connected(makeClient(pool))
    const vm = await xapi.call('VM.create', vmRecord(label('callAsync VM')))
    let clone
    try {
      // Async.VM.clone -> task -> result (an XML-RPC fragment holding the new ref)
      const cloneLabel = label('callAsync clone')
      clone = await wait(xapi, xapi.callAsync('VM.clone', vm, cloneLabel), 'callAsync(VM.clone)')
      check(typeof clone === 'string' && clone.startsWith('OpaqueRef:') && clone !== vm, `VM.clone result ${clone}`)
      check((await xapi.call('VM.get_name_label', clone)) === cloneLabel, 'the clone has not the name given')
      const cached = await waitObject(xapi, clone, o => o !== undefined, 'the clone in the object cache')
      check(cached.name_label === cloneLabel && cached.is_a_template === false, 'cached clone')
      obs.clone = 'ok'

      // a failing task: hard_shutdown of a halted VM -> VM_BAD_POWER_STATE through error_info
      const e = await expectXapiError(
        wait(xapi, xapi.callAsync('VM.hard_shutdown', vm), 'callAsync(VM.hard_shutdown)'),
        'VM_BAD_POWER_STATE',
        'callAsync(VM.hard_shutdown) of a halted VM'
      )
      check(e.params[0] === vm, 'VM_BAD_POWER_STATE params[0] is not the VM', { params: e.params })
      check(e.task?.status === 'failure', 'the error carries no failed task record')
      obs.failed_task = { code: e.code, params: e.params }

      // VDI.create / VDI.destroy as tasks
      const sr = xapi.pool.default_SR
      const vdi = await wait(
        xapi,
        xapi.callAsync('VDI.create', vdiRecord(label('callAsync VDI'), sr, 4 * MiB)),
        'callAsync(VDI.create)'
      )
      check(typeof vdi === 'string' && vdi.startsWith('OpaqueRef:'), `VDI.create result ${vdi}`)
      check((await xapi.call('VDI.get_virtual_size', vdi)) === 4 * MiB, 'VDI virtual_size')
      const destroyed = await wait(xapi, xapi.callAsync('VDI.destroy', vdi), 'callAsync(VDI.destroy)')
      check(destroyed === '', `VDI.destroy task result ${JSON.stringify(destroyed)} (expected "")`)
      await expectXapiError(xapi.call('VDI.get_record', vdi), 'HANDLE_INVALID', 'VDI.get_record after destroy')
      obs.vdi_create_destroy = 'ok'

      // the client destroys every task it watched (task.destroy, without waiting)
      const tasks = calls.filter(c => c.method.startsWith('Async.') && c.outcome === 'ok').map(c => c.result)
      obs.async_calls = calls.filter(c => c.method.startsWith('Async.')).map(c => c.method)
      check(tasks.length === 4, `expected 4 Async calls, saw ${tasks.length}`)
      await poll(async () => {
        const left = await xapi.call('task.get_all')
        return tasks.every(t => !left.includes(t))
      }, 'the tasks to be destroyed by the client')
      obs.tasks_destroyed = true
    } finally {
      if (clone !== undefined) await xapi.call('VM.destroy', clone).catch(() => {})
      await xapi.call('VM.destroy', vm).catch(() => {})
      await xapi.disconnect()
    }
  },

  async events(pool, _pools, obs) {
    const xapi = await connected(makeClient(pool))
    const timings = {}
    const timed = async (what, fn) => {
      const start = Date.now()
      const result = await fn()
      timings[what] = Date.now() - start
      return result
    }
    let vm
    try {
      // add
      vm = await xapi.call('VM.create', vmRecord(label('events VM')))
      let o = await timed('add', () => waitObject(xapi, vm, o => o !== undefined, 'the new VM (add event)'))
      check(o.$type === 'VM' && o.power_state === 'Halted', 'cached new VM')

      // mod: a setter, through the record helper (VM.set_name_label)
      const newLabel = label('events renamed')
      await o.set_name_label(newLabel)
      o = await timed('set_name_label', () =>
        waitObject(xapi, vm, o => o?.name_label === newLabel, 'name_label change (mod event)')
      )

      // mod: a map entry the way XO sets one (remove_from_other_config, then add_to_other_config)
      const value = String(Date.now())
      await o.update_other_config('xo:conformance', value)
      o = await timed('add_to_other_config', () =>
        waitObject(xapi, vm, o => o?.other_config['xo:conformance'] === value, 'other_config entry (mod event)')
      )
      await o.update_other_config('xo:conformance', null)
      await timed('remove_from_other_config', () =>
        waitObject(xapi, vm, o => o !== undefined && !('xo:conformance' in o.other_config), 'entry removal')
      )

      // del
      await xapi.call('VM.destroy', vm)
      await timed('del', () => waitObject(xapi, vm, o => o === undefined, 'the VM to leave the cache (del event)'))
      vm = undefined
      obs.latency_ms = timings
      const froms = calls.filter(c => c.method === 'event.from')
      obs.event_from_calls = froms.length
      const token = froms[0]?.args[2]
      obs.first_token = typeof token === 'string' ? (token === '' ? '""' : 'string') : typeof token
      obs.timeout_param = froms[0]?.args[3]
      obs.event_from_classes = froms[0]?.args[1]
      const inject = calls.find(c => c.method === 'event.inject')
      obs.event_inject_args = inject === undefined ? 'not called' : summarize(inject.args)
      check(inject?.outcome === 'ok', 'event.inject did not give the initial token')
      check(froms.length >= 2 && froms[0].args[2] === inject.result, 'the first event.from token is not event.inject\'s')
      check(xapi.watchEventsError === undefined, 'watchEventsError is set', { error: String(xapi.watchEventsError) })
    } finally {
      if (vm !== undefined) await xapi.call('VM.destroy', vm).catch(() => {})
      await xapi.disconnect()
    }
  },

  async barrier(pool, _pools, obs) {
    const xapi = await connected(makeClient(pool))
    const poolRef = xapi.pool.$ref
    const before = xapi.pool.name_description
    try {
      // a stale barrier key (over an hour old) that barrier() must clean up
      const stale = 'xo:barrier:conformancestale'
      await xapi.call('pool.remove_from_other_config', poolRef, stale)
      await xapi.call('pool.add_to_other_config', poolRef, stale, String(Date.now() - 2 * 3600e3))
      await waitObject(xapi, poolRef, p => stale in p.other_config, 'the stale key in the cached pool')

      // XO's pattern: change something, then barrier(ref) returns the object up to date
      const description = label('barrier')
      await xapi.call('pool.set_name_description', poolRef, description)
      const start = Date.now()
      const p = await wait(xapi, xapi.barrier(poolRef), 'barrier(poolRef)')
      obs.barrier_ms = Date.now() - start
      check(p?.$ref === poolRef, 'barrier(ref) did not return the pool')
      check(p.name_description === description, 'barrier(ref) returned a pool older than the change', {
        got: p.name_description,
      })
      await wait(xapi, xapi.barrier(), 'barrier()')

      const adds = calls.filter(c => c.method === 'pool.add_to_other_config' && c.args[2]?.startsWith('xo:barrier:') && c.args[2] !== stale)
      check(adds.length === 2 && adds.every(c => c.outcome === 'ok'), 'barrier keys not added', { adds: adds.length })
      obs.barrier_key_value = /^\d+$/.test(adds[0].args[3]) ? 'ms timestamp' : adds[0].args[3]
      // the client removes its keys and the stale one without waiting
      const leftover = await poll(async () => {
        const oc = await xapi.call('pool.get_other_config', poolRef)
        const keys = Object.keys(oc).filter(k => k.startsWith('xo:barrier:'))
        return keys.length === 0 ? 'none' : false
      }, 'the barrier keys to be removed from pool.other_config')
      obs.leftover_keys = leftover
      obs.removed = calls.filter(c => c.method === 'pool.remove_from_other_config').map(c => (c.args[2] === stale ? 'stale' : 'own'))
      check(obs.removed.includes('stale'), 'the stale barrier key was not removed by the client')
    } finally {
      await xapi.call('pool.set_name_description', poolRef, before).catch(() => {})
      await xapi.disconnect()
    }
  },

  async resources(pool, _pools, obs) {
    const xapi = await connected(makeClient(pool))
    const size = 4 * MiB
    const sr = xapi.pool.default_SR
    const vdi = await xapi.call('VDI.create', vdiRecord(label('resources VDI'), sr, size))
    let importTask, exportTask
    try {
      const data = crypto.randomBytes(size)
      obs.sha256_written = sha256(data)

      // import as XO's VDI importContent does: a stream with a length, its own task
      const body = Readable.from(
        (function* () {
          for (let offset = 0; offset < size; offset += MiB) yield data.subarray(offset, offset + MiB)
        })()
      )
      body.length = size
      importTask = await xapi.createTask('Importing content into VDI (xo-conformance)')
      const putStart = Date.now()
      const putResult = await wait(
        xapi,
        xapi.putResource(body, '/import_raw_vdi/', { query: { format: 'raw', vdi }, task: importTask }),
        'putResource /import_raw_vdi/ and its task',
        30e3
      )
      obs.put_ms = Date.now() - putStart
      obs.put_task_result = putResult
      const puts = http.filter(h => h.method === 'PUT')
      obs.put_requests = puts.map(h => ({ path: h.path, content_length: h.content_length, status: h.status }))
      check(puts.length === 2, `expected the probe PUT and the data PUT, saw ${puts.length}`)
      check(puts[0].status >= 200 && puts[0].status < 300, `probe PUT answered ${puts[0].status}`)
      check(puts[1].status === 200, `data PUT answered ${puts[1].status}`)
      check(Number(puts[1].content_length) === size && puts[1].transfer_encoding === undefined, 'data PUT framing')
      check(!/task_id=/.test(puts[0].path) && /task_id=/.test(puts[1].path), 'task_id on the data PUT only')
      // XAPI's import_raw_vdi completes the task with the VDI's ref as result
      check(putResult === vdi, `the import task result is ${JSON.stringify(putResult)}, not the VDI`)

      // export as XO's VDI exportContent does (raw): getResource, own task, body stream
      exportTask = await xapi.createTask('Exporting content of VDI (xo-conformance)')
      const response = await wait(
        xapi,
        xapi.getResource('/export_raw_vdi/', { query: { format: 'raw', vdi }, task: exportTask }),
        'getResource /export_raw_vdi/'
      )
      check(response.statusCode === 200, `export answered ${response.statusCode}`)
      const chunks = []
      for await (const chunk of response.body) chunks.push(chunk)
      const read = Buffer.concat(chunks)
      obs.bytes_read = read.length
      obs.sha256_read = sha256(read)
      obs.export_headers = {
        'content-length': response.headers['content-length'],
        'transfer-encoding': response.headers['transfer-encoding'],
        'content-type': response.headers['content-type'],
      }
      const exportResult = await wait(xapi, response.task, 'the export task')
      obs.get_task_result = exportResult
      check(read.length === size, `read ${read.length} bytes, wrote ${size}`)
      check(obs.sha256_read === obs.sha256_written, 'the exported bytes differ from the imported ones')
      const gets = http.filter(h => h.method === 'GET')
      obs.get_requests = gets.map(h => ({ path: h.path, status: h.status }))

      await poll(async () => {
        const left = await xapi.call('task.get_all')
        return !left.includes(importTask) && !left.includes(exportTask)
      }, 'the import/export tasks to be destroyed by the client')
      obs.tasks_destroyed = true
    } finally {
      // a failed request leaves its task pending (the client destroys a task once settled)
      for (const task of [importTask, exportTask]) {
        if (task !== undefined) await xapi.call('task.destroy', task).catch(() => {})
      }
      await xapi.call('VDI.destroy', vdi).catch(() => {})
      await xapi.disconnect()
    }
  },

  // run by `tls_refused` in children whose trust store lacks the pool's certificate
  async _tls_refused_child(pool, _pools, obs) {
    const xapi = makeClient(pool)
    let error
    try {
      await xapi.connect()
    } catch (e) {
      error = e
    }
    check(error !== undefined, 'connect() succeeded although the server certificate is not trusted')
    const code = error.code ?? error.cause?.code
    obs.error = code
    check(TLS_ERROR_CODES.has(code), `connect() failed, but not on certificate verification: ${code} ${error.message}`)
    check(xapi.status === 'disconnected', `status ${xapi.status}`)
    check(
      !calls.some(c => c.method === 'session.login_with_password' && c.outcome === 'ok'),
      'a login went through'
    )
    // control: the same server, allowUnauthorized, does answer the login
    const control = makeClient(pool, { allowUnauthorized: true, watchEvents: false })
    await control.connect().catch(() => {})
    const login = calls.filter(c => c.method === 'session.login_with_password').at(-1)
    obs.control_login_with_allow_unauthorized = login?.outcome
    check(login?.outcome === 'ok', 'control: login with allowUnauthorized did not succeed either')
    await control.disconnect()
  },

  // strict TLS: no CA given, then another pool's certificate as the only extra CA
  async tls_refused(pool, pools, obs) {
    const variants = [['no extra CA', undefined]]
    const other = pools.find(p => p.ca_file !== pool.ca_file)
    if (other !== undefined && fs.readFileSync(other.ca_file, 'utf8') !== fs.readFileSync(pool.ca_file, 'utf8')) {
      variants.push(["another pool's certificate", other.ca_file])
    }
    for (const [what, ca] of variants) {
      const result = runChild('_tls_refused_child', ca)
      obs[what] = result.json?.observations ?? result.stderr.slice(-500)
      check(result.status === 0, `${what}: ${result.json?.error?.message ?? result.stderr.slice(-500)}`, result.json)
    }
    check(variants.length === 2, 'no second pool with another certificate to use as a wrong CA')
  },
}

// ---------------------------------------------------------------------------------------------
// Driver

let argv
function runChild(check, ca) {
  const env = { ...process.env, [CHILD_ENV]: '1' }
  if (ca === undefined) delete env.NODE_EXTRA_CA_CERTS
  else env.NODE_EXTRA_CA_CERTS = ca
  const result = spawnSync(process.execPath, [SELF, argv.poolsFile, check], {
    env,
    encoding: 'utf8',
    timeout: CHECK_DEADLINE_MS + 10e3,
  })
  let json
  try {
    json = JSON.parse(result.stdout.trim().split('\n').at(-1))
  } catch {}
  return { status: result.status, json, stderr: result.stderr ?? '', stdout: result.stdout ?? '' }
}

function describe(error) {
  if (error === undefined || error === null) return error
  const out = { message: redact(error.message ?? String(error)) }
  if (error.code !== undefined) out.code = error.code
  if (error.params !== undefined) out.params = summarize(error.params)
  if (error.call !== undefined) out.call = { method: error.call.method, params: summarize(error.call.params) }
  if (error.details !== undefined) out.details = summarize(error.details)
  if (error.cause?.code !== undefined) out.cause = error.cause.code
  if (error.url !== undefined) out.url = redact(error.url)
  if (error.response?.statusCode !== undefined) out.status = error.response.statusCode
  if (!(error instanceof CheckFailure) && error.stack) out.stack = redact(error.stack.split('\n').slice(0, 6).join('\n'))
  return out
}

function finish(name, observations, error) {
  const ok = error === undefined
  const line = JSON.stringify({
    check: name,
    ok,
    observations,
    calls: callList(),
    http: httpList(),
    warnings,
    ...(ok ? {} : { error: describe(error) }),
  })
  if (!ok) process.stderr.write(`${name}: FAILED: ${describe(error).message}\n`)
  process.stdout.write(line + '\n', () => process.exit(ok ? 0 : 1))
}

// disconnect() sends session.logout without waiting for it: give it a moment to be answered,
// so that a check does not leave its session behind
async function settleLogouts(ms = 2e3) {
  const end = Date.now() + ms
  while (calls.some(c => c.method === 'session.logout' && c.outcome === undefined) && Date.now() < end) {
    await new Promise(resolve => setTimeout(resolve, 20))
  }
}

async function main() {
  const [poolsFile, name] = process.argv.slice(2)
  if (poolsFile === undefined || name === undefined || !(name in checks)) {
    process.stderr.write(
      `usage: node conformance.mjs <pools.json> <check>\nchecks: ${Object.keys(checks)
        .filter(c => !c.startsWith('_'))
        .join(' ')}\n`
    )
    process.exit(2)
  }
  if (name.startsWith('_') && process.env[CHILD_ENV] !== '1') {
    process.stderr.write(`${name} is internal (run by tls_refused)\n`)
    process.exit(2)
  }
  argv = { poolsFile }
  const pools = JSON.parse(fs.readFileSync(poolsFile, 'utf8')).pools
  const pool = pools[0]

  // trust the pool's certificate through NODE_EXTRA_CA_CERTS, which only works from the start
  if (process.env[CHILD_ENV] !== '1' && name !== 'tls_refused') {
    const result = runChild(name, pool.ca_file)
    process.stderr.write(result.stderr)
    process.stdout.write(result.stdout, () => process.exit(result.status ?? 1))
    return
  }
  if (name !== 'tls_refused' && name !== '_tls_refused_child') {
    assert.equal(process.env.NODE_EXTRA_CA_CERTS, pool.ca_file)
  }

  const observations = {}
  let done = false
  const end = error => {
    if (done) return
    done = true
    finish(name, observations, error)
  }
  // the client's event loop drops TypeErrors (e.g. a malformed event.from answer) as
  // unhandled rejections: report them as this check's failure
  process.on('unhandledRejection', error => end(error instanceof Error ? error : new Error(String(error))))
  process.on('uncaughtException', error => end(error))
  const deadline = setTimeout(
    () => end(new CheckFailure(`the check did not finish within ${CHECK_DEADLINE_MS} ms`)),
    CHECK_DEADLINE_MS
  )
  let failure
  try {
    await checks[name](pool, pools, observations)
  } catch (error) {
    failure = error
  }
  await settleLogouts()
  clearTimeout(deadline)
  end(failure)
}

main()
