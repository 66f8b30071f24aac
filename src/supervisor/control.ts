/** A fleet-wide control change: enable/disable, start/stop a worker, pause/resume a tag. */
export type ControlOp = 'enable' | 'disable' | 'start' | 'stop' | 'pause' | 'resume';

/** What a pause/resume tag may be: 1-200 letters, digits or `_.:-`. */
export const TAG = /^[A-Za-z0-9_.:-]{1,200}$/;
