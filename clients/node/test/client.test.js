'use strict';
// Runs against a live server: UBA_TEST_SERVER=host:port node --test test/
// (tests/clients/test_node.py starts one and runs this).
const test = require('node:test');
const assert = require('node:assert/strict');
const { UbaClient, grpc } = require('..');

const address = process.env.UBA_TEST_SERVER;
// The server's API key (tests start servers with keys on).
const apiKey = process.env.UBA_TEST_API_KEY || undefined;
const skip = address ? false : 'UBA_TEST_SERVER is not set';
const unique = (prefix) => `${prefix}-${Math.random().toString(36).slice(2, 10)}`;
const ago = (s) => new Date(Date.now() - s * 1000);

test('capabilities describe the server', { skip }, async () => {
  const client = new UbaClient(address, { apiKey });
  const caps = await client.capabilities();
  assert.ok(caps.version);
  assert.ok(caps.export_formats.includes('csv'));
  client.close();
});

test('a retried event is stored once', { skip }, async () => {
  const client = new UbaClient(address, { apiKey });
  const user = unique('node');
  const event = { event_id: unique('evt'), user_id: user, type: 'login_success', occurred_at: ago(60) };
  const first = await client.record(event);
  const again = await client.record(event);
  assert.equal(first.duplicate, false);
  assert.equal(again.duplicate, true);
  const page = await client.listLogs({ user_id: user });
  assert.equal(page.events.length, 1);
  assert.equal(page.events[0].type, 'ACTIVITY_TYPE_LOGIN_SUCCESS');
  client.close();
});

test('a batch reports each item', { skip }, async () => {
  const client = new UbaClient(address, { apiKey });
  const user = unique('node');
  const reply = await client.recordBatch([
    { user_id: user, type: 'logout', occurred_at: ago(30), session_duration: 90.5 },
    { user_id: user, type: 'login_success', occurred_at: ago(20), source_ip: 'not-an-ip' },
  ]);
  assert.equal(reply.accepted_count, 1);
  assert.equal(reply.invalid_count, 1);
  assert.match(reply.results[1].violations[0].field, /source_ip/);
  client.close();
});

test('an unreachable server is reported, not retried for ever', { skip }, async () => {
  const client = new UbaClient('127.0.0.1:1', { maxAttempts: 2 });
  await assert.rejects(client.capabilities(), (err) => err.code === grpc.status.UNAVAILABLE);
  client.close();
});

test('followAlerts delivers alerts and resumes from its seq', { skip }, async () => {
  const client = new UbaClient(address, { apiKey });
  const burst = (user) => client.recordBatch(Array.from({ length: 12 }, (_, i) => (
    { user_id: user, type: 'login_failure', occurred_at: ago(120 - 5 * i), source_ip: '203.0.113.200' })));
  const waitFor = async (list) => {
    for (let i = 0; i < 100 && list.length === 0; i += 1) await new Promise((r) => { setTimeout(r, 100); });
  };

  const user = unique('node-victim');
  const seen = [];
  const follower = client.followAlerts({ userId: user, onAlert: (a) => seen.push(a) });
  await new Promise((r) => { setTimeout(r, 500); }); // let it subscribe ("from now")
  await burst(user);
  await waitFor(seen);
  follower.stop();
  assert.ok(seen.length >= 1, 'no alert arrived');
  assert.equal(seen[0].user_id, user);
  assert.equal(seen[0].detector, 'failed_login_burst');
  assert.equal(follower.seq, Number(seen[seen.length - 1].seq));

  // An alert raised while nobody follows is replayed to a follower that
  // resumes from the seq the first one stopped at.
  const later = unique('node-victim');
  await burst(later);
  const replayed = [];
  const resumed = client.followAlerts({ afterSeq: follower.seq, userId: later, onAlert: (a) => replayed.push(a) });
  await waitFor(replayed);
  resumed.stop();
  assert.equal(replayed.length >= 1 && replayed[0].user_id, later);
  assert.ok(Number(replayed[0].seq) > follower.seq);
  client.close();
});
