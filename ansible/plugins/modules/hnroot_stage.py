#!/usr/bin/python
# -*- coding: utf-8 -*-
"""hnroot_stage: stage a signed root image for the next boot (`hnroot stage --json`)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: hnroot_stage
short_description: Stage a signed hnroot root image for the next boot
description:
  - Runs C(hnroot stage SOURCE --json) on the host. hnroot checks the image's minisign signature
    against the host's trusted keys, copies it to hostpart as C(hn-root-new.img) (resuming an
    interrupted copy) and judges it as GRUB will; the next boot boots it on trial.
  - An image that is already running or already staged (the same filesystem UUID as
    C(hn-root.img) or C(hn-root-new.img)) is C(changed=false); hnroot reports that with the stable
    refusal code C(duplicate-uuid). Any other refusal (an image on trial, no space, the UUID of an
    image that was rolled back or reverted) fails the task with hnroot's words and code.
  - In check mode C(hnroot stage --dry-run) opens the source and says whether it would be staged;
    nothing is written.
options:
  source:
    description: The image, an http(s) URL or a path on the host (for example under /warehouse).
    type: str
    required: true
  signature:
    description: The minisign signature (file or URL), when not SOURCE.minisig.
    type: str
  keys:
    description: The directory of trusted public keys (hnroot's default, /etc/hnroot/keys).
    type: path
  replace:
    description: Replace another image already staged.
    type: bool
    default: false
  force:
    description: Stage even while an image is on trial (it is then superseded before it was judged).
    type: bool
    default: false
  binary:
    description: The hnroot command.
    type: path
    default: /usr/sbin/hnroot
  hostpart:
    description: hostpart's directory (hnroot's default, C(/hostpart), when not given).
    type: path
  bootstate:
    description: The boot-state file (hnroot finds it when not given).
    type: path
author:
  - hnroot developers
"""

EXAMPLES = r"""
- name: Stage v3
  hnroot.fleet.hnroot_stage:
    source: https://images.example.org/fleet-v3.img
  register: staged

- name: Reboot only when something was staged
  ansible.builtin.reboot:
  when: staged.state == 'staged'
"""

RETURN = r"""
state:
  description: >-
    C(staged) (copied now, or would be in check mode), C(already-staged) (C(hn-root-new.img) is this
    image: the next boot boots it), C(running) (C(hn-root.img) is this image).
  returned: always
  type: str
uuid:
  description: The image's filesystem UUID.
  returned: always
  type: str
version:
  description: Its IMAGE_ID and IMAGE_VERSION (os-release).
  returned: always
  type: str
bytes_fetched:
  description: Bytes read from the source by this run (0 when nothing was staged).
  returned: always
  type: int
seconds:
  description: How long the stage took.
  returned: when staged
  type: float
stage:
  description: >-
    hnroot's C(staged) event as it printed it (every field, including any hnroot adds later,
    such as bytes reused from images already on the host).
  returned: when staged and not in check mode
  type: dict
next_boot:
  description: The next boot's decision record after the stage.
  returned: when staged and not in check mode
  type: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.hnroot.fleet.plugins.module_utils.hnroot import (
    events,
    hnroot_argument_spec,
    location_args,
)

# A refusal that means "this image is already here": the file that has its UUID -> state.
ALREADY = {"hn-root.img": "running", "hn-root-new.img": "already-staged"}


def stage_command(module, dry_run):
    p = module.params
    cmd = [p["binary"], "stage", p["source"], "--json"]
    if p["signature"]:
        cmd += ["--signature", p["signature"]]
    if p["keys"]:
        cmd += ["--keys", p["keys"]]
    if p["replace"]:
        cmd.append("--replace")
    if p["force"]:
        cmd.append("--force")
    if dry_run:
        cmd.append("--dry-run")
    return cmd + location_args(p)


def find(evs, name):
    for e in evs:
        if e.get("event") == name:
            return e
    return None


def main():
    spec = hnroot_argument_spec()
    spec.update(
        source=dict(type="str", required=True),
        signature=dict(type="str", default=None),
        keys=dict(type="path", default=None),
        replace=dict(type="bool", default=False),
        force=dict(type="bool", default=False),
    )
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    cmd = stage_command(module, module.check_mode)
    rc, out, err = module.run_command(cmd)
    evs = events(out)
    refused = find(evs, "refused")
    if refused and refused.get("code") == "duplicate-uuid" and refused.get("existing") in ALREADY:
        module.exit_json(
            changed=False,
            state=ALREADY[refused["existing"]],
            uuid=refused.get("uuid"),
            version=refused.get("version"),
            bytes_fetched=0,
        )
    if rc != 0:
        failed = find(evs, "failed") or {}
        error = find(evs, "error") or {}
        module.fail_json(
            msg="hnroot stage %s: %s" % (module.params["source"], error.get("error") or (err or out).strip()),
            code=(refused or {}).get("code") or failed.get("step"),
            rc=rc,
            events=evs,
        )
    if module.check_mode:
        would = find(evs, "would-stage") or {}
        module.exit_json(
            changed=True, state="staged", uuid=would.get("uuid"), version=would.get("version"), bytes_fetched=0
        )
    staged = find(evs, "staged")
    if staged is None:
        module.fail_json(msg="hnroot stage succeeded but printed no staged event", events=evs)
    module.exit_json(
        changed=True,
        state="staged",
        uuid=staged.get("uuid"),
        version=staged.get("version"),
        bytes_fetched=staged.get("bytes_fetched", 0),
        seconds=staged.get("seconds"),
        stage=staged,
        next_boot=staged.get("next_boot"),
    )


if __name__ == "__main__":
    main()
