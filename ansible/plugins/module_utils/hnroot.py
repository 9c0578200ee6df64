# -*- coding: utf-8 -*-
"""What the hnroot.fleet modules share: running the hnroot command on the managed host and
reading its JSON (`hnroot status --json`, the event lines of `hnroot stage --json`). hnroot
decides everything; these helpers only run it and reshape what it says."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

HNROOT = "/usr/sbin/hnroot"


def hnroot_argument_spec():
    """Options every module takes: the hnroot binary and where hostpart and the boot state are."""
    return dict(
        binary=dict(type="path", default=HNROOT),
        hostpart=dict(type="path", default=None),
        bootstate=dict(type="path", default=None),
    )


def location_args(params):
    """`--hostpart`/`--bootstate` when given."""
    args = []
    if params.get("hostpart"):
        args += ["--hostpart", params["hostpart"]]
    if params.get("bootstate"):
        args += ["--bootstate", params["bootstate"]]
    return args


def run_json(module, args):
    """Run `hnroot ARGS` (which print one JSON document); fail the task naming the command."""
    cmd = [module.params["binary"]] + args + location_args(module.params)
    rc, out, err = module.run_command(cmd)
    if rc != 0:
        module.fail_json(msg="%s failed (exit %d): %s" % (" ".join(cmd), rc, (err or out).strip()), rc=rc)
    try:
        return json.loads(out)
    except ValueError as e:
        module.fail_json(msg="%s printed no JSON (%s): %s" % (" ".join(cmd), e, out[:2000]))


def events(text):
    """The JSON event lines of `hnroot stage --json` (other lines are skipped)."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def image_facts(status, file_name):
    """The image `file_name` of `hnroot status --json`: file, uuid, version, image_version;
    None unless bootable."""
    image = (status.get("images") or {}).get(file_name) or {}
    if image.get("code") != "bootable":
        return None
    return dict(
        file=file_name,
        uuid=image.get("uuid"),
        version=image.get("version"),
        image_version=image.get("image_version"),
    )


def summary(status):
    """The facts a rollout looks at, from `hnroot status --json`."""
    running = status.get("running") or {}
    now_at = running.get("now_at")
    state = status.get("boot_state") or {}
    facts = dict(
        running=image_facts(status, now_at) if now_at else None,
        running_uuid=running.get("uuid"),
        staged=image_facts(status, "hn-root-new.img"),
        boot_state=state.get("state") or state.get("status"),
        good=state.get("good"),
        tries_left=state.get("tries_left"),
        revert_requested=bool(status.get("revert_requested")),
        next_boot=status.get("record"),
        next_image=status.get("image"),
        images=dict(
            (name, image_facts(status, name))
            for name in (status.get("images") or {})
            if image_facts(status, name)
        ),
    )
    facts["committed"] = bool(
        facts["boot_state"] == "committed" and facts["running_uuid"] and facts["good"] == facts["running_uuid"]
    )
    facts["on_trial"] = facts["boot_state"] == "trial"
    return facts
