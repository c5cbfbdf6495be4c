"""The ACME manager: the helper process that keeps every managed certificate issued.

Theory of operation
-------------------
One manager runs per gateway (acme/process.py starts it once the first
generation of workers serves, so HTTP-01 answers can be given). It loops:

- for each certificate, its due time: now when none is stored for all its
  names; else its expiry minus ``renew_before``, but never before a third of
  its life has passed (a ``renew_before`` longer than the CA's lifetime must
  not order a certificate after every other); and never before ``retry_at``
  after a failure;
- a due certificate is ordered (issuer.py). Success: the certificate and its
  key are stored, the status records it, and the master is asked to reload
  (``request_reload``), which puts the certificate in service the way SIGHUP
  does: new workers with new contexts, old ones drain, no connection is
  dropped. Failure: the error log says why, the status counts it and sets
  ``retry_at`` after a back-off that doubles per failure in a row (from
  ``retry_backoff`` up to a day); the certificate in service stays;
- then it sleeps until the next due time (at most an hour, to notice a
  clock jump), woken early by SIGTERM (stop) or SIGUSR1 (reopen the log).

State lives in the storage (status.json), not in the process: a manager
restarted by a reload with other ACME settings, or respawned after a crash,
keeps the back-off and the counts. Signals are blocked and taken with
``sigtimedwait``, so an order is never cut in the middle by a Python
exception; a SIGTERM during an order is taken after it (the master SIGKILLs
a manager that takes more than its grace time; the order is made again).
"""

import signal
import time
from collections.abc import Callable

from fastgate.acme.issuer import OrderFailed, obtain
from fastgate.acme.settings import MAX_BACKOFF_S, ManagedCertificate
from fastgate.acme.storage import CertificateStore
from fastgate.observe import errorlog
from fastgate.observe.errorlog import log
from fastgate.runtime.helper_process import name_process

PROCESS_NAME = b"fastgate-acme"
_LONGEST_SLEEP_S = 3600.0
_LAST_ERROR_CHARS = 500


def run_manager(certificates: tuple[ManagedCertificate, ...], request_reload: Callable[[], None],
                user_agent: str) -> int:
    """The manager process's main: keep ``certificates`` issued until SIGTERM; returns the exit code."""
    name_process(PROCESS_NAME)
    handled = {signal.SIGTERM, signal.SIGINT, signal.SIGUSR1}
    signal.pthread_sigmask(signal.SIG_BLOCK, handled)
    stores = [CertificateStore(managed) for managed in certificates]
    while True:
        next_due = time.time() + _LONGEST_SLEEP_S
        for store in stores:
            if due_at(store) <= time.time():
                renew(store, request_reload, user_agent)
            next_due = min(next_due, due_at(store))
        taken = signal.sigtimedwait(handled, max(0.0, next_due - time.time()))
        if taken is None:
            continue
        if taken.si_signo == signal.SIGUSR1:
            errorlog.reopen()
            continue
        return 0


def due_at(store: CertificateStore) -> float:
    """When the certificate of ``store`` is to be ordered (Unix time; 0: at once)."""
    managed = store.managed
    status = store.status()
    current = store.current()
    if current is None:
        due = 0.0
    else:
        lifetime = current.not_after - current.not_before
        due = max(current.not_after - managed.renew_before_s, current.not_before + lifetime / 3)
    return max(due, status.retry_at)


def renew(store: CertificateStore, request_reload: Callable[[], None], user_agent: str) -> bool:
    """Order the certificate of ``store`` once; True when a new one is stored."""
    managed = store.managed
    status = store.status()
    log.info("ACME: ordering a certificate for %s from %s", ", ".join(managed.names), managed.directory)
    try:
        chain, key = obtain(managed, user_agent)
    except OrderFailed as exc:
        status.failures += 1
        status.failed_in_a_row += 1
        wait_s = min(MAX_BACKOFF_S, managed.retry_backoff_s * 2 ** (status.failed_in_a_row - 1))
        status.retry_at = time.time() + wait_s
        status.last_error = str(exc)[:_LAST_ERROR_CHARS]
        store.write_status(status)
        log.error("ACME: no certificate for %s: %s; the certificate in service stays; next attempt in %.0fs",
                  managed.name, exc, wait_s)
        return False
    store.save(chain, key)
    status.issued += 1
    status.failed_in_a_row = 0
    status.retry_at = 0.0
    status.last_error = ""
    store.write_status(status)
    current = store.current()
    until = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(current.not_after)) if current else "?"
    log.info("ACME: new certificate for %s, valid until %s; reloading to serve it", managed.name, until)
    request_reload()
    return True
