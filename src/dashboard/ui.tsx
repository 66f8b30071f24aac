// Pieces every view uses: loading data, errors, status badges, a confirmation dialog.
import type { ComponentChildren } from 'preact';
import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import { ApiError } from './api.js';

export interface Loaded<T> {
  data: T | undefined;
  error: Error | undefined;
  reload: () => void;
}

/**
 * Loads `load()` when `deps` change and again on `reload()`; with `everyMs`, again at that
 * interval. Keeps the last data while reloading, so a view does not flicker.
 */
export function useData<T>(load: () => Promise<T>, deps: unknown[], everyMs?: number): Loaded<T> {
  const [data, setData] = useState<T | undefined>(undefined);
  const [error, setError] = useState<Error | undefined>(undefined);
  const [tick, setTick] = useState(0);
  const reload = useCallback(() => setTick((t) => t + 1), []);
  useEffect(() => {
    let live = true;
    load().then(
      (d) => {
        if (!live) return;
        setData(d);
        setError(undefined);
      },
      (e: unknown) => live && setError(e instanceof Error ? e : new Error(String(e))),
    );
    return () => {
      live = false;
    };
  }, [...deps, tick]);
  useEffect(() => {
    if (!everyMs) return;
    const t = setInterval(reload, everyMs);
    return () => clearInterval(t);
  }, [everyMs, reload]);
  useEffect(() => {
    setData(undefined);
  }, deps);
  return { data, error, reload };
}

export function ErrorBox({ error }: { error: Error }) {
  const code = error instanceof ApiError ? `${error.code}: ` : '';
  return (
    <p class="error" role="alert">
      {code}
      {error.message}
    </p>
  );
}

export function Loading() {
  return (
    <p class="muted" aria-live="polite">
      Loading…
    </p>
  );
}

/** What a view shows of data not there yet: its error, or that it is loading (nothing once it has data). */
export function Pending({ loaded }: { loaded: Pick<Loaded<unknown>, 'data' | 'error'> }) {
  if (loaded.error) return <ErrorBox error={loaded.error} />;
  return loaded.data ? null : <Loading />;
}

export function Badge({ status }: { status: string }) {
  return <span class={`badge badge-${status}`}>{status}</span>;
}

/**
 * A button that opens a modal dialog asking to confirm `title`; `onConfirm` runs on "Confirm"
 * (its error is shown in the dialog). Esc or "Cancel" closes it without acting.
 */
export function ConfirmButton(props: {
  label: string;
  title: string;
  children?: ComponentChildren;
  disabled?: boolean;
  danger?: boolean;
  onConfirm: (form: HTMLFormElement) => Promise<void>;
}) {
  const dialog = useRef<HTMLDialogElement>(null);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await props.onConfirm(e.currentTarget as HTMLFormElement);
      dialog.current?.close();
    } catch (err) {
      setError(err instanceof Error ? err.message : String(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <>
      <button type="button" class={props.danger ? 'danger' : ''} disabled={props.disabled} onClick={() => (setError(null), dialog.current?.showModal())}>
        {props.label}
      </button>
      <dialog ref={dialog} aria-labelledby={`${props.label.replace(/\W+/g, '-')}-title`}>
        <form onSubmit={submit}>
          <h2 id={`${props.label.replace(/\W+/g, '-')}-title`}>{props.title}</h2>
          {props.children}
          {error && (
            <p class="error" role="alert">
              {error}
            </p>
          )}
          <div class="actions">
            <button type="button" onClick={() => dialog.current?.close()}>
              Cancel
            </button>
            <button type="submit" class={props.danger ? 'danger primary' : 'primary'} disabled={busy}>
              Confirm
            </button>
          </div>
        </form>
      </dialog>
    </>
  );
}
