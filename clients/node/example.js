'use strict';
// Records a short session and prints alert changes as they arrive.
//   UBA_SERVER=127.0.0.1:50051 node example.js
const { UbaClient } = require('.');

const client = new UbaClient(process.env.UBA_SERVER || '127.0.0.1:50051', { apiKey: process.env.UBA_API_KEY });

async function main() {
  const caps = await client.capabilities();
  console.log(`uba ${caps.version} (${caps.storage_backend}, ${caps.detectors.length} detectors)`);

  const login = await client.record({ user_id: 'node-demo', type: 'login_success', source_ip: '10.0.0.7' });
  console.log(`recorded ${login.event_id}${login.duplicate ? ' (duplicate)' : ''}`);
  const batch = await client.recordBatch([
    { user_id: 'node-demo', type: 'api_call', api_method: 'GET', api_path: '/v1/customers', status_code: 200 },
    { user_id: 'node-demo', type: 'logout', session_duration: 1800 },
  ]);
  console.log(`batch: ${batch.accepted_count} accepted, ${batch.duplicate_count} duplicate, ${batch.invalid_count} invalid`);

  console.log('following alerts; Ctrl-C to stop');
  const follower = client.followAlerts({
    onAlert: (a) => console.log(`${a.seq} ${a.severity} ${a.user_id} ${a.detector}: ${a.reason}`),
    onError: (err) => { console.error(`uba: ${err.details || err.message}`); process.exit(1); },
  });
  process.on('SIGINT', () => {
    follower.stop();
    client.close();
    console.error(`resume with afterSeq ${follower.seq}`);
  });
}

main().catch((err) => {
  console.error(`uba: ${err.details || err.message}`);
  process.exit(1);
});
