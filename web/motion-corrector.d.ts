// Types of motion-corrector.js (framecast motion correction with onnxruntime-web).

/** One joint: [x, y, z] or {x, y, z} (other keys of an object are kept). */
export type Joint = [number, number, number] | number[] | { x: number; y: number; z: number; [key: string]: unknown };

export type JointName = "head" | "hips" | "left_arm" | "right_arm";

/** A tracking frame in the users' format; the timestamp is seconds, a Date or ISO-8601
 * (session files need one; correct() passes it through unread). */
export interface Frame {
  timestamp?: number | string | Date;
  head: Joint;
  hips: Joint;
  left_arm: Joint;
  right_arm: Joint;
  [key: string]: unknown;
}

/** The input frame with the joints corrected (same shapes), or passed through. */
export type CorrectedFrame<F extends Frame = Frame> = F & {
  /** false while fewer than sequenceLength frames were seen (the input is returned). */
  corrected: boolean;
};

export interface LatencyStats {
  count: number;
  lastMs: number;
  meanMs: number;
  medianMs: number;
  /** nearest-rank 95th percentile */
  p95Ms: number;
}

/** The JSON written beside the model by `framecast export onnx`. */
export interface MotionModelMeta {
  format?: string;
  sequence_length: number;
  target: "next" | "denoise";
  feature_names: string[];
  input?: { name: string; shape: (string | number)[] };
  output?: { name: string; shape: (string | number)[] };
  normalisation?: { mean: number[]; std: number[]; in_graph: boolean };
  opset?: number;
  [key: string]: unknown;
}

export interface Session {
  raw: Float32Array[];
  timestamps: number[];
}

export interface LoadOptions {
  /** URL of the .onnx file, or its bytes. */
  model: string | ArrayBuffer | Uint8Array;
  /** URL of the JSON beside the model or the parsed object; default: model URL with .json. */
  meta?: string | MotionModelMeta;
  /** The onnxruntime-web module (`import * as ort from "onnxruntime-web"`); default: imported. */
  ort?: unknown;
  /** default ["wasm"] */
  executionProviders?: unknown[];
  sessionOptions?: Record<string, unknown>;
}

export declare const JOINTS: readonly JointName[];
export declare const AXES: readonly ["x", "y", "z"];
export declare const NUM_FEATURES: 12;
export declare const FEATURE_NAMES: readonly string[];

export declare class MotionCorrectorError extends Error {}

export declare function parseTimestamp(value: number | string | Date, where?: string): number;
export declare function frameFeatures(
  frame: Frame,
  where?: string,
  options?: { requireTimestamp?: boolean },
): { features: Float32Array; timestamp: number | null }; // timestamp: only with requireTimestamp
export declare function featuresToFrame<F extends Frame>(features: ArrayLike<number>, like?: F | null): F;
export declare function parseSessions(data: unknown, source?: string): Session[];
export declare function latencyStats(latencies: number[]): LatencyStats;
export declare function fetchJson(url: string, what?: string, hint?: string): Promise<unknown>;
export declare function checkMeta(meta: unknown, where?: string): MotionModelMeta;

export declare class MotionCorrector {
  static load(options: LoadOptions): Promise<MotionCorrector>;
  constructor(ort: unknown, session: unknown, meta: MotionModelMeta, modelName?: string);
  readonly meta: MotionModelMeta;
  readonly inputName: string;
  readonly outputName: string;
  readonly sequenceLength: number;
  readonly target: "next" | "denoise";
  readonly windowSize: number;
  readonly ready: boolean;
  readonly latencies: number[];
  /** Push a frame; the corrected frame once the window is full (for a `next` model: the
   * prediction of the following frame), else the input with corrected: false. */
  correct<F extends Frame>(frame: F): Promise<CorrectedFrame<F>>;
  /** The same on 12 numbers; null until the window is full. */
  correctFeatures(features: ArrayLike<number>): Promise<Float32Array | null>;
  /** One model call on a window of rows of 12 (batch 1). */
  predictWindow(rows: ArrayLike<number>[], options?: { timed?: boolean }): Promise<Float32Array>;
  idle(): Promise<void>;
  reset(): void;
  resetStats(): void;
  stats(): LatencyStats;
  dispose(): Promise<void>;
}
