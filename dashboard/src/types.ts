// What the API returns (the subset the dashboard reads; see docs/service.md), and what every
// view is given.
import type { Me } from "./api";

export interface Ctx {
  me: Me;
  main: HTMLElement;
  /** aborted when the user navigates away: views stop their streams and timers with it */
  signal: AbortSignal;
}

export interface Progress {
  description: string;
  completed: number;
  total: number;
  metrics?: Record<string, number>;
  updated?: number | null;
}

export interface Unit {
  state: string;
  reason?: string | null;
  started?: string | null;
  finished?: string | null;
  seconds?: number | null;
  queued_s?: number | null;
  evictions?: number | null;
  attempt?: number | null;
  error?: string | null;
  progress?: Progress | null;
}

export interface Step {
  state: string;
  reason?: string | null;
  started?: string | null;
  finished?: string | null;
  seconds?: number | null;
  error?: string | null;
  warnings?: string[];
  units?: Record<string, Unit>;
}

export interface DeviceResult {
  step?: string | null;
  arch?: string | null;
  supernet_top1?: number | null;
  top1?: number | null;
  predicted_latency_ms?: number | null;
  measured_latency_ms?: number | null;
  budget_ms?: number | null;
}

/** What a search's full view and its summary in the listing both carry. */
interface SearchHead {
  search_id: string;
  name: string;
  owner: string;
  strategy: string;
  state: string;
  created: string;
  finished?: string | null;
}

export interface SearchView extends SearchHead {
  generation: number;
  plan: string[];
  targets: string[];
  steps: Record<string, Step>;
  devices: Record<string, DeviceResult>;
  failed_step?: string | null;
  error?: string | null;
  warnings?: string[];
  progress?: Record<string, Progress>;
}

export interface SearchSummary extends SearchHead {
  devices: string[];
  progress?: { done: number; total: number } | null;
  results?: Record<string, { top1?: number | null; latency_ms?: number | null;
                              budget_ms?: number | null }> | null;
}

export interface Point {
  arch: string;
  accuracy: number;
  latency_ms: number;
}

export interface EvolutionInsight {
  budget_ms?: number | null;
  evaluated?: number | null;
  history: { iteration: number; evaluated: number; best_accuracy: number; best_arch: string }[];
  pareto: Point[];
  top: Point[];
  rescored?: Record<string, unknown> | null;
}

export interface LayerInfo {
  index: number;
  op: string;
  kernel?: number | null;
  expansion?: number | null;
  se?: boolean | null;
  stride?: number | null;
  cin?: number | null;
  cout?: number | null;
  hw?: number | null;
  macs?: number | null;
  params?: number | null;
}

export interface Insights {
  search_id: string;
  strategy: string;
  state: string;
  supernets?: Record<string, {
    loss_curve?: [number, number][] | number[] | null;
    iterations?: number | null;
    final_loss?: number | null;
    quality?: Record<string, any> | null;
  }> | null;
  evolution?: Record<string, Record<string, EvolutionInsight>> | null;
  space?: {
    kind: string;
    num_layers: number;
    ops: string[];
    choices: string[][];
    scores?: Record<string, Record<string, Record<string, number>>> | null;
    chosen?: Record<string, string[][]> | null;
  } | null;
  tables?: Record<string, { fixed_ms?: number; ops: Record<string, Record<string, number>>;
                            source?: string }> | null;
  predictors?: Record<string, {
    metrics?: { mape?: number; within_10pct?: number; srcc?: number; max_ape?: number } | null;
    table_sum?: Record<string, number> | null;
    points: { arch: string; measured_ms: number; predicted_ms: number; split?: string }[];
  }> | null;
  correlation?: { devices: string[]; srcc: number[][]; proxy?: Record<string, any> | null } | null;
  winners?: Record<string, DeviceResult & { macs?: number | null; params?: number | null;
                                            layers?: LayerInfo[] | null }> | null;
}

export interface Artifact {
  key: string;
  size?: number | null;
  sha256?: string | null;
  url: string;
}
