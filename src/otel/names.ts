// One catalogue of every span, attribute, metric and event name drover emits (docs/observability.md).

export const SPAN_STATE = 'drover.state';
export const SPAN_CLAIM = 'drover.claim';
export const SPAN_STEP = 'drover.step';
export const SPAN_PERIODIC_RUN = 'drover.periodic.run';
export const SPAN_SLA_CHECK = 'drover.sla.check';
export const EVENT_SLA_BREACH = 'drover.sla.breach';

export const ATTR_MACHINE = 'drover.machine';
export const ATTR_VERSION = 'drover.machine.version';
export const ATTR_STATE = 'drover.state';
export const ATTR_INSTANCE = 'drover.instance.id';
export const ATTR_NEXT_STATE = 'drover.next_state';
export const ATTR_EVENT = 'drover.event';
export const ATTR_STATUS = 'drover.status';
export const ATTR_QUEUE = 'drover.queue';
export const ATTR_RECORDS = 'drover.records';
export const ATTR_NODE = 'drover.node';
export const ATTR_PERIODIC = 'drover.periodic';
export const ATTR_SCHEDULED_FOR = 'drover.scheduled_for';
export const ATTR_ATTEMPT = 'drover.attempt';
export const ATTR_SLA_SECONDS = 'drover.sla.seconds';

export const METRIC_RESIDENCY = 'drover.state.residency';
export const METRIC_RECORDS = 'drover.state.records';
export const METRIC_OLDEST = 'drover.state.oldest_age';
export const METRIC_SLA_BREACHES = 'drover.sla.breaches';

/** Residency histogram buckets in seconds: a second up to a month. */
export const RESIDENCY_BUCKETS = [1, 5, 15, 30, 60, 300, 900, 1800, 3600, 7200, 14_400, 28_800, 43_200, 86_400, 172_800, 345_600, 604_800, 1_209_600, 2_592_000];
