#!/usr/bin/env python3
"""pty_drive.py — runs a command on a pseudo-terminal and plays a script of
steps against it, so that specs can test what only a terminal shows (the
REPL's prompt, line editing, Ctrl-C and Ctrl-D).

usage: pty_drive.py [--timeout S] STEP... -- COMMAND [ARG...]

Steps, one argument each, run in order:
  expect:REGEX   wait (at most --timeout seconds, default 5) until REGEX
                 (Python syntax, DOTALL) matches the output read since the
                 end of the previous match
  absent:REGEX   the output since the previous match must not match REGEX
  send:TEXT      write TEXT to the terminal; backslash escapes (\\r, \\n,
                 \\x03 for Ctrl-C, \\x04 for Ctrl-D) are decoded
  sleep:SECONDS  keep reading output for SECONDS
  exit:CODE      wait (bounded) for the command to exit with status CODE;
                 CODE "any" accepts every status

Prints the whole transcript (as a Python repr, one chunk per line) and one
final line "pty_drive: ok" or "pty_drive: FAIL <why>". Exits 0 or 1. The
command is killed when the steps end, so nothing outlives the driver.
"""
import codecs
import os
import pty
import re
import select
import signal
import sys
import time


class Session:
    def __init__(self, argv, timeout):
        self.timeout = timeout
        self.buf = b""
        self.pos = 0
        self.status = None
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            try:
                os.execvp(argv[0], argv)
            finally:
                os._exit(127)

    def read_some(self, until):
        """Reads what is available until `until` (a time.monotonic value);
        returns False once the terminal reports end of output."""
        left = max(0.0, until - time.monotonic())
        ready, _, _ = select.select([self.fd], [], [], left)
        if not ready:
            return True
        try:
            data = os.read(self.fd, 4096)
        except OSError:
            data = b""
        if not data:
            return False
        self.buf += data
        return True

    def text(self):
        return self.buf[self.pos:].decode("utf-8", "replace")

    def expect(self, pattern):
        rx = re.compile(pattern, re.S)
        until = time.monotonic() + self.timeout
        while True:
            m = rx.search(self.text())
            if m:
                self.pos += len(self.text()[: m.end()].encode("utf-8"))
                return True
            if time.monotonic() >= until or not self.read_some(until):
                m = rx.search(self.text())
                if m:
                    self.pos += len(self.text()[: m.end()].encode("utf-8"))
                    return True
                return False

    def pause(self, seconds):
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            if not self.read_some(until):
                time.sleep(max(0.0, until - time.monotonic()))
                break

    def wait_exit(self):
        until = time.monotonic() + self.timeout
        while time.monotonic() < until:
            pid, st = os.waitpid(self.pid, os.WNOHANG)
            if pid == self.pid:
                self.status = os.waitstatus_to_exitcode(st)
                self.pause(0.05)
                return self.status
            self.read_some(min(until, time.monotonic() + 0.05))
        return None

    def kill(self):
        if self.status is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
            except OSError:
                pass
        os.close(self.fd)


def main(args):
    timeout = 5.0
    if args[:1] == ["--timeout"]:
        timeout = float(args[1])
        args = args[2:]
    if "--" not in args:
        print("usage: pty_drive.py [--timeout S] STEP... -- COMMAND [ARG...]")
        return 2
    cut = args.index("--")
    steps, argv = args[:cut], args[cut + 1:]
    s = Session(argv, timeout)
    verdict = "ok"
    try:
        for step in steps:
            kind, _, value = step.partition(":")
            if kind == "expect":
                if not s.expect(value):
                    verdict = "FAIL expect %r timed out" % value
                    break
            elif kind == "absent":
                s.pause(0)
                if re.search(value, s.text(), re.S):
                    verdict = "FAIL absent %r was found" % value
                    break
            elif kind == "send":
                os.write(s.fd, codecs.decode(value, "unicode_escape").encode("latin-1"))
            elif kind == "sleep":
                s.pause(float(value))
            elif kind == "exit":
                st = s.wait_exit()
                if st is None:
                    verdict = "FAIL the command did not exit"
                    break
                if value != "any" and st != int(value):
                    verdict = "FAIL exit status %d, wanted %s" % (st, value)
                    break
            else:
                verdict = "FAIL unknown step %r" % step
                break
    finally:
        s.kill()
    for line in s.buf.decode("utf-8", "replace").split("\n"):
        print(repr(line))
    if s.status is not None:
        print("pty_drive: exit status %d" % s.status)
    print("pty_drive: " + verdict)
    return 0 if verdict == "ok" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
