/**
 * A TCP relay between a shipping agent and guard-collector on 127.0.0.1 that lets fault tests act
 * on what they observe on the wire instead of on timing: it counts the `POST /v1/events` requests
 * that reached it (a send is in flight) and can hold the collector's answers to them (the collector
 * stored the batch, the agent has not seen the acknowledgement, so its outbox still holds it).
 * Other requests (enroll) pass untouched. HTTP/1.1 without pipelining, as the agent speaks it.
 */
import { connect, createServer, type Server, type Socket } from 'node:net';

export interface HttpGate {
  /** `http://127.0.0.1:<port>`: give this to the agent as the collector URL. */
  readonly url: string;
  /** `POST /v1/events` requests that reached the gate since it started. */
  readonly requests: number;
  /** Answers to those requests the gate holds back (received from the collector, never forwarded). */
  readonly held: number;
  /** Answers to events requests the gate forwarded to the agent. */
  readonly forwarded: number;
  /**
   * From now on forward the next `n` answers to events requests and hold every one after
   * (`Infinity`: hold none). Held answers are dropped when either side closes.
   */
  forwardThenHold(n: number): void;
  /** Where the collector listens now (after a restart on another port). */
  setUpstream(port: number): void;
  close(): Promise<void>;
}

export async function startHttpGate(upstreamPort: number): Promise<HttpGate> {
  let upstream = upstreamPort;
  let requests = 0;
  let held = 0;
  let forwarded = 0;
  let budget = Number.POSITIVE_INFINITY;
  const sockets = new Set<Socket>();

  const server: Server = createServer((client) => {
    const up = connect(upstream, '127.0.0.1');
    sockets.add(client);
    sockets.add(up);
    // Whether the answer now coming from the collector belongs to an events request, and whether
    // this connection's current answer is being held.
    let awaitingEventsAnswer = false;
    let holding = false;
    const closeBoth = (): void => {
      client.destroy();
      up.destroy();
      sockets.delete(client);
      sockets.delete(up);
    };
    client.on('error', closeBoth).on('close', closeBoth);
    up.on('error', closeBoth).on('close', closeBoth);
    client.on('data', (chunk: Buffer) => {
      const head = chunk.toString('latin1', 0, 24);
      if (/^[A-Z]+ \//.test(head)) {
        awaitingEventsAnswer = head.startsWith('POST /v1/events');
        holding = false;
        if (awaitingEventsAnswer) requests++;
      }
      up.write(chunk);
    });
    up.on('data', (chunk: Buffer) => {
      if (awaitingEventsAnswer) {
        awaitingEventsAnswer = false;
        if (budget > 0) {
          budget--;
          forwarded++;
        } else {
          holding = true;
          held++;
        }
      }
      if (!holding) client.write(chunk);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  return {
    url: `http://127.0.0.1:${port}`,
    get requests() {
      return requests;
    },
    get held() {
      return held;
    },
    get forwarded() {
      return forwarded;
    },
    forwardThenHold(n) {
      budget = n;
    },
    setUpstream(p) {
      upstream = p;
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
