"""``zfs send`` and ``zfs receive`` as streams.

A stream is never held in memory: :func:`send` yields the sending process's stdout pipe to read from,
:func:`receive` yields the receiving process's stdin pipe to write to, and :func:`send_to_file` /
:func:`receive_from_file` / :func:`replicate` connect the processes to files or to each other directly.
Leaving the ``with`` block waits for the process and raises the typed error if it failed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import IO

from appliance.system.errors import CommandFailed, InvalidInput
from appliance.system.runner import PIPE, StreamHandle
from appliance.zfs import names, properties
from appliance.zfs.errors import InvalidStream, classify
from appliance.zfs.host import ZfsHost


@dataclass(frozen=True)
class SendOptions:
    incremental_from: str | None = None  # a snapshot (or, on OpenZFS, a bookmark) of the same dataset
    intermediates: bool = False  # -I: include every snapshot between
    replicate: bool = False  # -R: descendants and properties
    properties: bool = False  # -p
    raw: bool = False  # -w: encrypted datasets as ciphertext (OpenZFS)
    resume_token: str | None = None  # -t: continue an interrupted receive (OpenZFS)


def send_argv(host: ZfsHost, snapshot: str | None, opts: SendOptions) -> list[str]:
    if opts.resume_token is not None:
        host.caps.require("resume_tokens")
        if snapshot is not None or opts.incremental_from is not None:
            raise InvalidInput("a resumed send takes only the resume token")
        token = opts.resume_token
        if not token or any(not (c.isalnum() or c in "-") for c in token):
            raise InvalidInput("malformed resume token")
        return ["zfs", "send", "-t", token]
    if snapshot is None:
        raise InvalidInput("send needs a snapshot")
    ds, _ = names.split_snapshot(snapshot)
    argv = ["zfs", "send"]
    if opts.replicate:
        argv.append("-R")
    if opts.properties:
        argv.append("-p")
    if opts.raw:
        host.caps.require("native_encryption")
        argv.append("-w")
    if opts.incremental_from is not None:
        base = opts.incremental_from
        if "#" in base:
            host.caps.require("bookmarks")
            base_ds, _, mark = base.partition("#")
            names.dataset_name(base_ds)
            names.component(mark)
        else:
            base_ds, _ = names.split_snapshot(base)
        if base_ds != ds:
            raise InvalidInput(f"incremental base {base} is not of dataset {ds}")
        argv += ["-I" if opts.intermediates else "-i", base]
    argv.append(snapshot)
    return argv


def _reraise(exc: CommandFailed, subject: str) -> None:
    raise classify(exc, subject) from exc


@contextlib.contextmanager
def send(
    host: ZfsHost, snapshot: str | None, opts: SendOptions = SendOptions(), *, timeout: float | None = None
) -> Iterator[IO[bytes]]:
    """Yield a pipe with the send stream of ``snapshot``."""
    argv = send_argv(host, snapshot, opts)
    try:
        with host.runner.stream(argv, stdout=PIPE, timeout=timeout) as proc:
            yield proc.stdout
    except CommandFailed as exc:
        _reraise(exc, snapshot or "resumed send")


def receive_argv(
    host: ZfsHost, target: str, *, force: bool = False, resumable: bool = False, mount: bool = False
) -> list[str]:
    names.any_name(target)
    argv = ["zfs", "receive"]
    if force:
        argv.append("-F")
    if resumable:
        host.caps.require("resume_tokens")
        argv.append("-s")
    if not mount:
        argv.append("-u")
    argv.append(target)
    return argv


@contextlib.contextmanager
def receive(
    host: ZfsHost,
    target: str,
    *,
    force: bool = False,
    resumable: bool = False,
    mount: bool = False,
    timeout: float | None = None,
) -> Iterator[IO[bytes]]:
    """Yield a pipe to write a send stream into; it is received as ``target``.

    ``force`` (``-F``) rolls the target back to its newest snapshot first; it is never used on client
    data. Received datasets are left unmounted unless ``mount`` is asked for."""
    argv = receive_argv(host, target, force=force, resumable=resumable, mount=mount)
    try:
        with host.runner.stream(argv, stdin=PIPE, timeout=timeout) as proc:
            try:
                yield proc.stdin
            except BrokenPipeError:
                # zfs receive gave up reading (bad stream); its exit status and stderr say why.
                pass
    except CommandFailed as exc:
        _reraise(exc, target)


def send_to_file(host: ZfsHost, snapshot: str, out: IO[bytes], opts: SendOptions = SendOptions()) -> None:
    """Write the send stream into an open binary file (or pipe)."""
    try:
        with host.runner.stream(send_argv(host, snapshot, opts), stdout=out):
            pass
    except CommandFailed as exc:
        _reraise(exc, snapshot)


def receive_from_file(
    host: ZfsHost, target: str, src: IO[bytes], *, force: bool = False, resumable: bool = False
) -> None:
    try:
        with host.runner.stream(receive_argv(host, target, force=force, resumable=resumable), stdin=src):
            pass
    except CommandFailed as exc:
        _reraise(exc, target)


def replicate(
    host: ZfsHost, snapshot: str, target: str, opts: SendOptions = SendOptions(), *, resumable: bool = False
) -> None:
    """``zfs send … | zfs receive …`` on one host, the two processes joined by a pipe."""
    send_cmd = send_argv(host, snapshot, opts)
    recv_cmd = receive_argv(host, target, resumable=resumable)
    try:
        with host.runner.stream(send_cmd, stdout=PIPE) as sender:
            try:
                with host.runner.stream(recv_cmd, stdin=sender.stdout):
                    # The receiver owns the pipe now; close our copy so a dead receiver stops the sender.
                    sender.stdout.close()
            except CommandFailed as exc:
                error = classify(exc, target)
                cause = _sender_failure(sender, send_cmd) if isinstance(error, InvalidStream) else None
                sender.kill()
                if cause is not None:
                    raise classify(cause, snapshot) from exc
                raise error from exc
    except CommandFailed as exc:
        _reraise(exc, snapshot)


def _sender_failure(sender: StreamHandle, argv: Sequence[str]) -> CommandFailed | None:
    """The sender's own failure, when the receiver saw an empty or short stream because of it (an
    incremental base that does not exist, a read error) rather than going away first."""
    code = sender.wait(timeout=1)
    if code is None or code <= 0:
        return None
    return CommandFailed(argv, code, sender.stderr_text())


def resume_token(host: ZfsHost, dataset: str) -> str | None:
    """The token to resume an interrupted ``receive -s`` into ``dataset`` (OpenZFS), or None."""
    host.caps.require("resume_tokens")
    value = properties.get_one(host, dataset, ("receive_resume_token",)).get("receive_resume_token")
    if value is None or value.value in ("-", ""):
        return None
    return value.value


def abort_resumable(host: ZfsHost, dataset: str) -> None:
    """Discard the partial state of an interrupted resumable receive (``zfs receive -A``)."""
    host.caps.require("resume_tokens")
    host.zfs("receive", "-A", names.dataset_name(dataset), subject=dataset)
