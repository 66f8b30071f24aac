// The names docs snippets use without declaring them. scripts/check-docs.mjs puts every export
// of this file in scope of every snippet (unless the snippet declares the name itself), next to
// everything 'drover' exports. See docs/README.md, "Snippets that check".
//
// Add a name here when several pages use it; a name one snippet needs goes in that snippet's
// own `<!-- check: prelude … -->` comment instead.

import type { PushMetricExporter } from '@opentelemetry/sdk-metrics';
import type { SpanExporter } from '@opentelemetry/sdk-trace-base';
import type { AnyStateMachine } from 'xstate';
import type { Runtime, TransitionMessage, WorkerEntry } from 'drover';
import type { order as Order } from '../machines/order.js';

export { order, checkOptions } from '../machines/order.js';

/** The runtime of the docs, typed by the order machine: what `createRuntime({ machines: [order] })` returns. */
export declare const drover: Runtime<typeof Order>;
/** The same runtime, under the name the signature tables use. */
export declare const runtime: Runtime<typeof Order>;
/** The XState machine inside `order` (what `durable(machine, …)` wraps). */
export declare const machine: (typeof Order)['machine'];
/** Two versions of a machine, for the versioning examples. */
export declare const orderMachineV1: AnyStateMachine;
export declare const orderMachineV2: AnyStateMachine;
/** A connection string. */
export declare const database: string;

/** Orders to create in bulk. */
export declare const orders: { id: string; amount: number }[];
/** A job body: deletes what is older than `days` days, returns how many it deleted. */
export declare function purge(days: number): Promise<number>;
/** A worker body: sends one batch of mail, resolves whether there was anything to send. */
export declare function sendBatch(signal: AbortSignal): Promise<boolean>;
/** A subscription handler. */
export declare function handler(t: TransitionMessage): Promise<void>;
/** Something that mails customers, given a transition's `ids` (its context's `*_id` fields). */
export declare const mailer: { shipped(ids: Record<string, unknown>): Promise<void> };
/** OpenTelemetry exporters (OTLP, console, …). */
export declare const metricExporter: PushMetricExporter;
export declare const spanExporter: SpanExporter;
/** A metrics client's histogram (prom-client, …). */
export declare const histogram: { observe(value: number): void };
/** Draws a dashboard. */
export declare function render(workers: WorkerEntry[]): void;
