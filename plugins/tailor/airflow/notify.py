"""Tailor's alerts: one Airflow notifier for failed tasks and missed deadlines, declared once.

    on_failure_callback=TailorNotifier()                                   # a task failed (runs in the task's process)
    DeadlineAlert(..., callback=AsyncCallback(TailorNotifier, kwargs={"event": "deadline", "message": ...}))

Where an alert goes, decided when it is sent (never at parse time):
- e-mail, when the Connection `smtp_default` exists (host, port, login, password; extra: `to` (comma-separated),
  `from_email`, `starttls` (default true) or `ssl`), or Airflow's [smtp] section sets a host other than its default
  (sent from and to [smtp] smtp_mail_from, the team mailbox);
- Slack, when the Connection `slack_default` (or `slack_webhook_default`) exists: an incoming-webhook URL as its
  password (or host + password as the Slack provider stores it), posted with httpx; the URL is a secret and is
  never logged;
- and always the one log line the hourly DAG has written since its first version (the task log, or the triggerer's
  log for a deadline), so an alert that could not be sent still leaves a trace.
A channel that fails is logged (without its secret) and does not hide the others.
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

from airflow.sdk import BaseNotifier

log = logging.getLogger("tailor")

SMTP_CONN_ID = "smtp_default"
SLACK_CONN_IDS = ("slack_default", "slack_webhook_default")
SEND_TIMEOUT_SECONDS = 15.0


@dataclass(frozen=True)
class Smtp:
    host: str
    port: int
    login: str | None
    password: str | None
    sender: str
    recipients: tuple[str, ...]
    use_ssl: bool = False
    starttls: bool = True


def _get(obj: Any, key: str, default: Any = None) -> Any:
    """A field of a dict (the deadline's simple context) or an object (a task's context)."""
    if obj is None:
        return default
    if isinstance(obj, Mapping):
        return obj.get(key, default)
    return getattr(obj, key, default)


def describe(context: Mapping[str, Any], event: str) -> str:
    """The one line of an alert: which DAG and task, for which interval, and why (the exception's own message)."""
    ti = context.get("ti") or context.get("task_instance")
    run = context.get("dag_run")
    dag_id = _get(ti, "dag_id") or _get(run, "dag_id") or "?"
    if event == "deadline":
        deadline = _get(context.get("deadline"), "deadline_time", "?")
        return (f"tailor: {dag_id} run {_get(run, 'run_id', '?')} missed its deadline {deadline}: interval "
                f"[{_get(run, 'data_interval_start')}, {_get(run, 'data_interval_end')}) not delivered yet")
    start = context.get("data_interval_start", _get(run, "data_interval_start"))
    end = context.get("data_interval_end", _get(run, "data_interval_end"))
    return (f"tailor: {dag_id}.{_get(ti, 'task_id', '?')} failed for interval [{start}, {end}): "
            f"{context.get('exception')}")


def _connection(conn_id: str):
    """The Connection, or None when it is not defined (or Connections cannot be read here)."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return None
    except Exception as exc:  # an alert must not fail on a secrets backend hiccup
        log.warning("tailor alerts: cannot read Connection %s: %s", conn_id, type(exc).__name__)
        return None


def _truthy(value: Any, default: bool) -> bool:
    if value is None:
        return default
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def smtp_settings() -> Smtp | None:
    """Where e-mail alerts go, or None when no SMTP is configured."""
    conn = _connection(SMTP_CONN_ID)
    if conn is not None and conn.host:
        extra = conn.extra_dejson or {}
        sender = extra.get("from_email") or conn.login or f"tailor@{conn.host}"
        recipients = tuple(a.strip() for a in str(extra.get("to") or sender).split(",") if a.strip())
        use_ssl = _truthy(extra.get("ssl"), False)
        return Smtp(conn.host, int(conn.port or (465 if use_ssl else 587)), conn.login, conn.password, sender,
                    recipients, use_ssl=use_ssl, starttls=_truthy(extra.get("starttls"), not use_ssl))
    from airflow.configuration import conf

    host = conf.get("smtp", "smtp_host", fallback="")
    if not host or host == conf.get_default_value("smtp", "smtp_host", fallback=""):
        return None
    sender = conf.get("smtp", "smtp_mail_from", fallback="") or f"tailor@{host}"
    use_ssl = conf.getboolean("smtp", "smtp_ssl", fallback=False)
    return Smtp(host, conf.getint("smtp", "smtp_port", fallback=587), conf.get("smtp", "smtp_user", fallback=None),
                conf.get("smtp", "smtp_password", fallback=None), sender, (sender,), use_ssl=use_ssl,
                starttls=conf.getboolean("smtp", "smtp_starttls", fallback=not use_ssl))


def send_email(smtp: Smtp, subject: str, body: str) -> None:
    message = EmailMessage()
    message["Subject"], message["From"], message["To"] = subject, smtp.sender, ", ".join(smtp.recipients)
    message.set_content(body)
    if smtp.use_ssl:
        client: smtplib.SMTP = smtplib.SMTP_SSL(smtp.host, smtp.port, timeout=SEND_TIMEOUT_SECONDS,
                                                context=ssl.create_default_context())
    else:
        client = smtplib.SMTP(smtp.host, smtp.port, timeout=SEND_TIMEOUT_SECONDS)
    with client:
        if smtp.starttls and not smtp.use_ssl:
            client.starttls(context=ssl.create_default_context())
        if smtp.login:
            client.login(smtp.login, smtp.password or "")
        client.send_message(message)


def slack_webhook_url() -> str | None:
    """The incoming-webhook URL of the first Slack Connection defined, or None. A secret: never log it."""
    for conn_id in SLACK_CONN_IDS:
        conn = _connection(conn_id)
        if conn is None:
            continue
        password, host = (conn.password or "").strip(), (conn.host or "").strip()
        if password.startswith(("https://", "http://")):
            return password
        if host and password:
            base = host if host.startswith(("https://", "http://")) else f"https://{host}"
            return f"{base.rstrip('/')}/{password.lstrip('/')}"
        if host.startswith(("https://", "http://")):
            return host
        log.warning("tailor alerts: Connection %s has no webhook URL (password, or host + password)", conn_id)
    return None


def post_slack(url: str, text: str) -> None:
    import httpx

    try:
        response = httpx.post(url, json={"text": text}, timeout=SEND_TIMEOUT_SECONDS)
    except httpx.HTTPError as exc:
        # httpx puts the URL in some messages: say only what kind of failure it was
        raise RuntimeError(f"Slack webhook unreachable ({type(exc).__name__})") from None
    if response.status_code >= 400:
        raise RuntimeError(f"Slack webhook answered HTTP {response.status_code}: {response.text[:200]}")


class TailorNotifier(BaseNotifier):
    """Sends one alert line (and, by e-mail, the details) to every configured channel; always logs it."""

    template_fields = ("message",)

    def __init__(self, message: str | None = None, event: str = "failure", context: dict | None = None):
        super().__init__(context=context)
        self.message = message
        self.event = event

    def notify(self, context) -> None:
        line = describe(context, self.event)
        if self.message:
            line = f"{line} ({self.message})"
        log.error("%s", line)
        sent = []
        smtp = smtp_settings()
        if smtp is not None:
            try:
                send_email(smtp, line[:200], line)
                sent.append("e-mail")
            except Exception as exc:  # one channel failing must not hide the others
                log.error("tailor alerts: e-mail to %s via %s failed: %s", ", ".join(smtp.recipients), smtp.host, exc)
        url = slack_webhook_url()
        if url is not None:
            try:
                post_slack(url, line)
                sent.append("Slack")
            except Exception as exc:  # idem
                log.error("tailor alerts: Slack failed: %s", exc)
        if sent:
            log.info("tailor alerts: sent by %s", " and ".join(sent))

    async def async_notify(self, context) -> None:
        """For the triggerer (deadline alerts): the same, on a thread (SMTP and the webhook are blocking calls)."""
        await asyncio.to_thread(self.notify, context)
