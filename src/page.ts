/** A page of `list()` or `runs()`. Pass `next` back as `after` (or `before`). */
export interface Page<T> {
  items: T[];
  next: string | null;
}
