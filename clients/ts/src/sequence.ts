/**
 * What a client has of a numbered stream (a room's gift ledger): every seq
 * seen once, the holes below the highest, and where the public window of
 * the ledger starts. The application gets each seq once, whatever arrives
 * twice (a notify and a pull, a retry); the holes are what to pull.
 */
export type Range = { after: number; until: number };

export class SeqTracker {
  /** Every seq up to and including this one was seen (or is out of reach). */
  #contiguous: number;
  /** Seqs seen above `#contiguous`. */
  readonly #above = new Set<number>();
  #highest: number;
  readonly #maxAhead: number;

  /**
   * Starts after `start` (the seq JoinRoom answered: what came before is
   * history, not a hole). At most `maxAhead` seqs are held above a hole; a
   * seq beyond that moves the start up, as the public window would.
   */
  constructor(start = 0, maxAhead = 10_000) {
    this.#contiguous = start;
    this.#highest = start;
    this.#maxAhead = Math.max(1, maxAhead);
  }

  /** True when `seq` is new: deliver it. False: seen (or below the start). */
  accept(seq: number): boolean {
    if (seq <= this.#contiguous || this.#above.has(seq)) return false;
    this.#above.add(seq);
    if (seq > this.#highest) this.#highest = seq;
    this.#advance();
    if (this.#highest - this.#contiguous > this.#maxAhead) {
      this.skipTo(this.#highest - this.#maxAhead);
    }
    return true;
  }

  /** The server said seqs up to `seq` are out of reach (a window start). */
  skipTo(seq: number): void {
    if (seq <= this.#contiguous) return;
    this.#contiguous = seq;
    for (const held of this.#above) if (held <= seq) this.#above.delete(held);
    if (this.#highest < seq) this.#highest = seq;
    this.#advance();
  }

  /** The room's head is at least `seq` (a JoinRoom, a pull's last_seq). */
  knowHead(seq: number): void {
    if (seq > this.#highest) this.#highest = seq;
  }

  /** The ranges to pull: each hole as (after, until], ascending. */
  holes(): Range[] {
    const ranges: Range[] = [];
    let previous = this.#contiguous;
    const held = [...this.#above].sort((a, b) => a - b);
    for (const seq of [...held, this.#highest + 1]) {
      if (seq > previous + 1) ranges.push({ after: previous, until: seq - 1 });
      previous = Math.max(previous, seq);
    }
    return ranges;
  }

  /** Every seq up to this one was seen. */
  get contiguous(): number {
    return this.#contiguous;
  }

  #advance(): void {
    while (this.#above.has(this.#contiguous + 1)) {
      this.#contiguous += 1;
      this.#above.delete(this.#contiguous);
    }
  }
}
