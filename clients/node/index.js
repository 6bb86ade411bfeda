'use strict';
// Node.js client of uba.v1.BehaviorAnalyticsService.
//
// Loads the contract at runtime from the repository's proto/ and
// third_party/googleapis/ (no generated code to keep in step). Records events
// with client-assigned ids (so retries are stored once) and follows
// StreamAlerts, reconnecting with the last seq it saw, so no alert change is
// missed or repeated across disconnects and server restarts.

const path = require('node:path');
const crypto = require('node:crypto');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const REPO = path.resolve(__dirname, '..', '..');
const PROTO_DIRS = [path.join(REPO, 'proto'), path.join(REPO, 'third_party', 'googleapis')];

let cachedService = null;

function loadService() {
  if (cachedService === null) {
    const definition = protoLoader.loadSync('uba/v1/service.proto', {
      includeDirs: PROTO_DIRS,
      keepCase: true, // field names as in the proto: user_id, occurred_at
      longs: Number, // seq and counts fit in a double for any realistic deployment
      enums: String,
      defaults: true, // false, 0 and '' appear instead of being left out
      oneofs: true,
    });
    cachedService = grpc.loadPackageDefinition(definition).uba.v1.BehaviorAnalyticsService;
  }
  return cachedService;
}

// A UUIDv7 (time-ordered) id, assigned before the first attempt.
function newEventId() {
  const bytes = crypto.randomBytes(16);
  const ms = BigInt(Date.now());
  for (let i = 0; i < 6; i += 1) bytes[i] = Number((ms >> BigInt(8 * (5 - i))) & 0xffn);
  bytes[6] = (bytes[6] & 0x0f) | 0x70;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = bytes.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

function toTimestamp(value) {
  const date = value instanceof Date ? value : new Date(value);
  if (Number.isNaN(date.getTime())) throw new TypeError(`not a time: ${value}`);
  const ms = date.getTime();
  return { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1e6 };
}

function toDate(ts) {
  return ts ? new Date(Number(ts.seconds) * 1000 + Math.floor((ts.nanos || 0) / 1e6)) : null;
}

// An ActivityEvent from plain values: `type` as 'login_success' or the enum
// name, `occurred_at` as a Date, ISO text or {seconds, nanos} (default now),
// `session_duration` in seconds.
function makeEvent(fields) {
  const event = { ...fields };
  if (!event.event_id) event.event_id = newEventId();
  if (typeof event.type === 'string' && !event.type.startsWith('ACTIVITY_TYPE_')) {
    event.type = `ACTIVITY_TYPE_${event.type.toUpperCase()}`;
  }
  const at = event.occurred_at ?? new Date();
  event.occurred_at = typeof at === 'object' && 'seconds' in at ? at : toTimestamp(at);
  if (typeof event.session_duration === 'number') {
    const s = event.session_duration;
    event.session_duration = { seconds: Math.floor(s), nanos: Math.round((s % 1) * 1e9) };
  }
  return event;
}

const RETRYABLE = new Set([grpc.status.UNAVAILABLE]);
const RETRYABLE_INGEST = new Set([grpc.status.UNAVAILABLE, grpc.status.DEADLINE_EXCEEDED,
  grpc.status.RESOURCE_EXHAUSTED]);
const RECONNECT = new Set([grpc.status.UNAVAILABLE, grpc.status.DEADLINE_EXCEEDED,
  grpc.status.RESOURCE_EXHAUSTED, grpc.status.ABORTED, grpc.status.INTERNAL, grpc.status.UNKNOWN]);

const sleep = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });
const backoff = (failures) => Math.min(5000, 100 * 2 ** (failures - 1)) * (0.8 + 0.4 * Math.random());

class UbaClient {
  // address: 'host:port'; options: { apiKey, timeoutMs (per call, 10 s),
  // maxAttempts (5; ingest 10), credentials (grpc.credentials, default insecure) }
  constructor(address = '127.0.0.1:50051', options = {}) {
    const Service = loadService();
    this.address = address;
    this.timeoutMs = options.timeoutMs ?? 10000;
    this.maxAttempts = options.maxAttempts ?? 5;
    this.stub = new Service(address, options.credentials ?? grpc.credentials.createInsecure(), {
      // Reconnect quickly after a restart: gRPC's default backoff outlasts our retries.
      'grpc.initial_reconnect_backoff_ms': 100,
      'grpc.max_reconnect_backoff_ms': 2000,
    });
    this.metadata = new grpc.Metadata();
    if (options.apiKey) this.metadata.set('authorization', `Bearer ${options.apiKey}`);
  }

  close() {
    this.stub.close();
  }

  unary(method, request, { retryOn = RETRYABLE, attempts = this.maxAttempts } = {}) {
    const once = () => new Promise((resolve, reject) => {
      const deadline = new Date(Date.now() + this.timeoutMs);
      this.stub[method](request, this.metadata, { deadline }, (err, reply) => (err ? reject(err) : resolve(reply)));
    });
    const attempt = async (failures) => {
      try {
        return await once();
      } catch (err) {
        if (!retryOn.has(err.code) || failures + 1 >= attempts) throw err;
        await sleep(backoff(failures + 1));
        return attempt(failures + 1);
      }
    };
    return attempt(0);
  }

  // Records one event; resolves once it is committed: { event_id, duplicate, received_at }.
  record(fields) {
    return this.unary('RecordActivity', { event: makeEvent(fields) },
      { retryOn: RETRYABLE_INGEST, attempts: Math.max(this.maxAttempts, 10) });
  }

  // Records up to 1000 events; each gets its own result (ACCEPTED, DUPLICATE, INVALID with violations).
  recordBatch(events) {
    return this.unary('RecordActivities', { events: events.map(makeEvent) },
      { retryOn: RETRYABLE_INGEST, attempts: Math.max(this.maxAttempts, 10) });
  }

  capabilities() {
    return this.unary('GetCapabilities', {});
  }

  listLogs(request = {}) {
    return this.unary('ListLogs', request);
  }

  listAlerts(request = {}) {
    return this.unary('ListAlerts', request);
  }

  // Follows alert changes. onAlert(alert) for each change; onError(err) when
  // the server refuses for good (e.g. a bad filter). Returns { stop(), seq }:
  // `seq` is where to resume (pass it as afterSeq next time). afterSeq 0
  // means "from now".
  followAlerts({ afterSeq = 0, minSeverity, userId = '', detector = '', onAlert, onError = () => {} } = {}) {
    const state = { seq: afterSeq, stopped: false, call: null, reconnects: 0 };
    let failures = 0;
    const connect = () => {
      if (state.stopped) return;
      const request = { after_seq: state.seq, user_id: userId, detector };
      if (minSeverity) request.min_severity = `SEVERITY_${String(minSeverity).toUpperCase()}`;
      const call = this.stub.StreamAlerts(request, this.metadata);
      state.call = call;
      let ended = false;
      const again = (err) => {
        if (ended || state.stopped) return;
        ended = true;
        if (err && !RECONNECT.has(err.code)) {
          onError(err);
          return;
        }
        failures += 1;
        state.reconnects += 1;
        setTimeout(connect, backoff(failures));
      };
      call.on('data', (message) => {
        failures = 0;
        const seq = Number(message.seq);
        if (message.alert) {
          if (seq <= state.seq) return; // already delivered before a reconnect
          state.seq = seq;
          onAlert(message.alert);
        } else {
          state.seq = Math.max(state.seq, seq);
        }
      });
      call.on('error', (err) => {
        if (state.stopped && err.code === grpc.status.CANCELLED) return;
        again(err);
      });
      call.on('end', () => again(null));
    };
    connect();
    return {
      stop() {
        state.stopped = true;
        if (state.call) state.call.cancel();
      },
      get seq() { return state.seq; },
      get reconnects() { return state.reconnects; },
    };
  }
}

module.exports = { UbaClient, makeEvent, newEventId, toTimestamp, toDate, grpc };
