/**
 * Owns nothing but the parse worker's loop: receives a body (transferred), runs `parseBatch` and
 * answers the packed batch (see parse-pool.ts); says `ready` once it listens. It holds no state, no
 * DB and no secrets.
 */
import { parentPort } from 'node:worker_threads';
import { parseBatch } from './ingest.js';
import { type ParseJob, type ParseReply, packBatch } from './parse-pool.js';

if (!parentPort) throw new Error('parse-worker.js runs only as a worker thread');
const port = parentPort;

port.on('message', (msg: ParseJob) => {
  let reply: ParseReply;
  try {
    const body = Buffer.from(msg.body.buffer, msg.body.byteOffset, msg.body.byteLength);
    reply = { job: msg.job, batch: packBatch(parseBatch(body, msg.deviceId)) };
  } catch (err) {
    reply = { job: msg.job, error: (err as Error).message };
  }
  port.postMessage(reply);
});
const ready: ParseReply = { ready: true };
port.postMessage(ready);
