/**
 * The skeleton shared by the parallel gzip and zstd compressors: the input is cut into
 * fixed-size blocks at fixed byte offsets, each block is handed to {@link compress}
 * (which runs it on the worker pool), and the compressed pieces are pushed in input order
 * between an optional header and trailer. At most `workers` blocks are being compressed
 * at a time, so memory is bounded and upstream is backpressured. Block cuts depend on the
 * input bytes and the block size only, never on how the input was chunked.
 */
import { Transform, type TransformCallback } from 'node:stream';

export abstract class ParallelBlockTransform extends Transform {
  /** The compression level, as the subclass understands it. */
  protected readonly level: number;
  /** Blocks in flight at most (and the pool size asked for). */
  protected readonly workers: number;
  /** Input bytes seen so far. */
  protected inputBytes = 0;
  readonly #blockSize: number;
  #block: Buffer;
  #fill = 0;
  #headerSent = false;
  readonly #queue: Promise<Buffer>[] = [];

  constructor(level: number, blockSize: number, workers: number) {
    super({ highWaterMark: blockSize, readableHighWaterMark: blockSize });
    this.level = level;
    this.workers = workers;
    this.#blockSize = blockSize;
    this.#block = Buffer.allocUnsafeSlow(blockSize);
  }

  /**
   * Compresses one block, called once per block in input order; the last call has
   * `final` set (its block may be empty). A full block owns its ArrayBuffer and may be
   * transferred to a worker: the caller never touches it again.
   */
  protected abstract compress(block: Buffer, final: boolean): Promise<Buffer>;

  /** Sees every input chunk, in order (for a checksum over the whole input). */
  protected onInput(_chunk: Buffer): void {}

  /** Bytes pushed before the first piece. */
  protected header(): Buffer | undefined {
    return undefined;
  }

  /** Bytes pushed after the last piece. */
  protected trailer(): Buffer | undefined {
    return undefined;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.#feed(chunk).then(() => cb(), cb);
  }

  override _flush(cb: TransformCallback): void {
    this.#finish().then(() => cb(), cb);
  }

  async #feed(chunk: Buffer): Promise<void> {
    this.onInput(chunk);
    this.inputBytes += chunk.length;
    let off = 0;
    while (off < chunk.length) {
      const n = Math.min(this.#blockSize - this.#fill, chunk.length - off);
      chunk.copy(this.#block, this.#fill, off, off + n);
      this.#fill += n;
      off += n;
      if (this.#fill === this.#blockSize) {
        const block = this.#block;
        this.#block = Buffer.allocUnsafeSlow(this.#blockSize);
        this.#fill = 0;
        this.#dispatch(block, false);
        while (this.#queue.length >= this.workers) this.#emit(await this.#queue.shift()!);
      }
    }
  }

  #dispatch(block: Buffer, final: boolean): void {
    const job = this.compress(block, final);
    // Awaited later, in order; this keeps a failure from being reported as unhandled meanwhile.
    job.catch(() => undefined);
    this.#queue.push(job);
  }

  #emit(piece: Buffer): void {
    if (!this.#headerSent) {
      this.#headerSent = true;
      const h = this.header();
      if (h !== undefined) this.push(h);
    }
    if (piece.length > 0) this.push(piece);
  }

  async #finish(): Promise<void> {
    this.#dispatch(this.#block.subarray(0, this.#fill), true);
    while (this.#queue.length > 0) this.#emit(await this.#queue.shift()!);
    const t = this.trailer();
    if (t !== undefined) this.push(t);
  }
}
