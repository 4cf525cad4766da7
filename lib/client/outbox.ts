/**
 * A connection's write side: the commands encoded and not yet written (one
 * growing buffer, so that everything issued in one tick leaves in one write),
 * the write in progress, and the bytes of commands that settled before they
 * were written (a timeout, an abort), which are left out and never sent.
 *
 * @module
 */

import type { Fifo, Pending } from "./pending.ts";
import { settle, squeeze, unsentError } from "./pending.ts";
import { CommandEncoder } from "../resp/encoder.ts";
import type { Transport } from "../transport/types.ts";

/**
 * Unsent bytes worth compacting at once when timed-out commands leave them
 * behind a stuck write (below this, the next write drops them anyway).
 */
const COMPACT_BYTES = 64 * 1024;

/** The commands of one connection on their way to the transport. */
export class Outbox {
  readonly #encoder = new CommandEncoder();
  /** Encoded in #encoder, not yet written. */
  #unsent: Pending[] = [];
  /** Bumped whenever #unsent is handed over (written or failed). */
  #batch = 0;
  /** Commands in #unsent that settled early (timeout/abort): never written. */
  #dropped = 0;
  /** Where written commands wait for their replies, in order. */
  readonly #inflight: Fifo<Pending>;
  /** The transport to write to now, or `null` when none may be written to. */
  readonly #writable: () => Transport | null;
  /** A write to `transport` failed (threw or rejected). */
  readonly #failed: (transport: Transport, err: unknown) => void;
  #writing = false;
  /** performance.now() when the write in progress started. */
  #writeStarted = 0;
  #flushQueued = false;
  #flushNow = (): void => {
    this.#flushQueued = false;
    this.flush();
  };

  /**
   * @param inflight Where written commands wait for their replies.
   * @param writable The transport to write to now, or `null` (not
   *   connected, or not in a state that writes).
   * @param failed Called when a write to a transport fails.
   */
  constructor(
    inflight: Fifo<Pending>,
    writable: () => Transport | null,
    failed: (transport: Transport, err: unknown) => void,
  ) {
    this.#inflight = inflight;
    this.#writable = writable;
    this.#failed = failed;
  }

  /** Commands waiting to be written (settled ones not counted). */
  get length(): number {
    return this.#unsent.length - this.#dropped;
  }

  /** performance.now() when the write in progress started, or -1 if none is. */
  get writeStarted(): number {
    return this.#writing ? this.#writeStarted : -1;
  }

  /**
   * Encodes one command; bad arguments throw before a byte is kept. Its
   * {@linkcode Pending} must follow with {@linkcode Outbox.add}.
   *
   * @param args The command name followed by its arguments.
   */
  encode(args: readonly unknown[]): void {
    this.#encoder.encode(args);
  }

  /**
   * Encodes MULTI, `commands` and EXEC, all or nothing: a command that fails
   * to encode (a lone surrogate) takes MULTI and the commands before it out
   * again, and throws.
   *
   * @param commands The transaction's commands.
   */
  encodeTransaction(commands: readonly (readonly unknown[])[]): void {
    const encoder = this.#encoder;
    const start = encoder.length;
    try {
      encoder.encode(["MULTI"]);
      for (const c of commands) encoder.encode(c);
      encoder.encode(["EXEC"]);
    } catch (err) {
      encoder.truncate(start);
      throw err;
    }
  }

  /**
   * Queues the command(s) just encoded, to be written with the next batch.
   *
   * @param p Their record.
   */
  add(p: Pending): void {
    p.end = this.#encoder.length;
    p.batch = this.#batch;
    this.#unsent.push(p);
  }

  /**
   * Whether `p`'s bytes are still waiting here, not yet handed to a
   * transport.
   *
   * @param p A command added earlier.
   * @returns `true` while it is unsent.
   */
  holds(p: Pending): boolean {
    return p.batch === this.#batch;
  }

  /**
   * A command still held here settled early: its bytes will be left out.
   */
  dropped(): void {
    this.#dropped++;
    // While a write is stuck (a peer that does not read), what is settled
    // must not keep its bytes: drop them now rather than at the next write.
    if (
      this.#writing && this.#dropped * 2 >= this.#unsent.length &&
      this.#encoder.length >= COMPACT_BYTES
    ) this.#compact();
  }

  /** Removes the bytes of settled, unsent commands from the encoder. */
  #compact(): void {
    const batch = this.#unsent;
    const keep: Pending[] = [];
    const bytes = squeeze(this.#encoder.take(), batch, (p) => keep.push(p));
    this.#unsent = keep;
    this.#dropped = 0;
    this.#encoder.append(bytes);
  }

  /** Flushes in a microtask, unless one is queued or a write is in progress. */
  schedule(): void {
    if (this.#flushQueued || this.#writing) return;
    this.#flushQueued = true;
    queueMicrotask(this.#flushNow);
  }

  /**
   * Writes what is encoded to the writable transport, one write at a time,
   * and moves the commands written to the in-flight queue.
   */
  flush(): void {
    for (;;) {
      if (this.#writing || this.#encoder.length === 0) return;
      const transport = this.#writable();
      if (transport === null) return;
      // A transport that lets go of written bytes gets a view of the
      // encoder's buffer (no copy); we only come back here once it is done.
      let bytes = transport.releasesWrites
        ? this.#encoder.takeView()
        : this.#encoder.take();
      const batch = this.#unsent;
      this.#unsent = [];
      this.#batch++;
      if (this.#dropped === 0) {
        const inflight = this.#inflight;
        for (let i = 0; i < batch.length; i++) inflight.push(batch[i]);
      } else {
        this.#dropped = 0;
        bytes = this.#keepUnsettled(bytes, batch);
        if (bytes.length === 0) continue;
      }
      let result: Promise<void> | void;
      try {
        result = transport.write(bytes);
      } catch (err) {
        this.#failed(transport, err);
        return;
      }
      if (result !== undefined) {
        this.#writing = true;
        this.#writeStarted = performance.now();
        result.then(
          () => {
            this.#writing = false;
            if (this.#writable() === transport) this.flush();
          },
          (err) => {
            this.#writing = false;
            this.#failed(transport, err);
          },
        );
      }
    }
  }

  /**
   * Moves the bytes of `batch`'s unsettled commands to the front of `bytes`
   * (which we own until it is written) and queues those commands for their
   * replies; the settled ones are dropped, never sent.
   */
  #keepUnsettled(bytes: Uint8Array, batch: Pending[]): Uint8Array {
    return squeeze(bytes, batch, (p) => this.#inflight.push(p));
  }

  /**
   * The transport is gone: its write in progress, if any, no longer holds
   * back the next transport's writes.
   */
  lost(): void {
    this.#writing = false;
  }

  /**
   * Fails every command waiting to be written and drops their bytes.
   *
   * @param error What ended them; they reject with it as never sent.
   */
  fail(error: Error): void {
    const unsent = this.#unsent;
    this.#unsent = [];
    this.#batch++;
    this.#dropped = 0;
    this.#encoder.take();
    if (unsent.length === 0) return;
    const notSent = unsentError(error);
    for (const p of unsent) settle(p, undefined, notSent);
  }
}
