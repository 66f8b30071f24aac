// The public API of drover: re-exports only.

export type { TransitionFilter, TransitionMessage } from './bus/bus.js';
export type { NatsSource } from './bus/nats.js';
export type { CallerTransaction } from './db/database.js';
export {
  DroverError,
  DuplicateRecordError,
  DuplicateWorkerError,
  EventNotAcceptedError,
  InvalidArgumentError,
  InvalidInputError,
  MachineChangedError,
  MachineDefinitionError,
  MachinesLoadError,
  MigrationChangedError,
  NotFailedError,
  UnmappedStatesError,
  UndeliverableMessageError,
  UnstorableValueError,
  DatabaseUnavailableError,
  RecordNotFoundError,
  RunTimeoutError,
  RuntimeStoppedError,
  SnapshotRestoreError,
  UnknownMachineError,
  UnknownVersionError,
  WaitTimeoutError,
  WaitUnreachableError,
  WorkerNotFoundError,
} from './errors.js';
export type { InputIssue, MachinesLoadReason } from './errors.js';
export type { HttpServer, ServeOptions } from './http/server.js';
export type { Logger } from './log.js';
export type { DurableMachine, DurableOptions, JobContext, JobMachine, JobOptions, ResidencyOptions } from './record/durable.js';
export { cancelJob, defineJob, durable, isDurableMachine, JobCancelledError } from './record/durable.js';
export { stateString } from './record/state.js';
export { sendToRecord, type RecordSend } from './record/actors.js';
export type { EmittedMessage } from './bus/bus.js';
export { checkMachine, type CheckOptions, type CheckProblem, type CheckProblemKind, type CheckResult } from './check/machine.js';
export type { RecordStatus } from './record/step.js';
export type { RuntimeOptions } from './runtime/options.js';
export type { AnyDurableMachine, ContextOf, EventOf, InputOf, MachineTypes, NameOf, RecordOf, StatePathOf, ValueOf } from './runtime/infer.js';
export { createRuntime } from './runtime/runtime.js';
export { partitionHistory, type PartitionHistoryOptions, type PartitionHistoryResult } from './engine/partitions.js';
export type { CreateManyItem, CreateManyOptions, CreateOptions, DroverEvent, HistoryEntry, ListOptions, MigrateMove, MigrateOptions, MigrateResult, NodeInfo, Page, ParkedTransition, PruneResult, RecordView, ResidencyRow, Runtime, StateCount, Unsubscribe, WaitCondition } from './runtime/types.js';
export type { PeriodicContext, PeriodicOptions, PeriodicResult, PeriodicRun } from './periodic/periodic.js';
export type { ScheduleSpec } from './periodic/schedule.js';
export type { MetricEvent, MetricStream } from './supervisor/metrics.js';
export type { HandlerResult } from './supervisor/results.js';
export { done, fail, none } from './supervisor/results.js';
export type { WorkerEntry, WorkerStatus } from './supervisor/store.js';
export type { FleetWorker, FleetWorkerNode, RunRecord, RunsOptions, Supervisor, WorkerConfig, WorkerHandle } from './supervisor/supervisor.js';
export type { HandlerContext, WorkerHandler } from './supervisor/worker.js';
export type { ResidencyProcessorOptions } from './otel/residency.js';
export { RESIDENCY_BUCKETS, ResidencySpanProcessor } from './otel/residency.js';
export type { Clock, Duration, TimerHandle } from './time.js';
export { parseDuration, systemClock, TestClock } from './time.js';
