#!/usr/bin/python
# -*- coding: utf-8 -*-
"""hnroot_status: facts from `hnroot status --json` (and the last lines of `hnroot history`)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: hnroot_status
short_description: Facts about an hnroot server's root images
description:
  - Runs C(hnroot status --json) on the host and returns what a rollout looks at, also as the
    fact C(hnroot): the running image (file, UUID, version), the staged one, the boot state
    (committed or trial, tries left), whether the running image is committed, what the next boot
    will do; with I(history_lines), the last lines of C(hnroot history).
  - Never changes anything; supports check mode.
options:
  history_lines:
    description: How many of the newest C(hnroot history) lines to return (0 for none).
    type: int
    default: 0
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
- name: Read hnroot's state
  hnroot.fleet.hnroot_status:
    history_lines: 10
  register: state

- name: Say what runs
  ansible.builtin.debug:
    msg: "{{ state.hnroot.running.version }} committed={{ state.hnroot.committed }}"
"""

RETURN = r"""
hnroot:
  description: The facts (also set as the host fact C(hnroot)).
  returned: always
  type: dict
  contains:
    running: {description: The running image (file, uuid, version, image_version), type: dict}
    staged: {description: C(hn-root-new.img) when bootable, type: dict}
    boot_state: {description: C(committed), C(trial), C(absent) or C(corrupt), type: str}
    committed: {description: The running image is the one recorded as good, type: bool}
    tries_left: {description: Tries of the image on trial, type: int}
    next_boot: {description: The next boot's decision record, type: str}
history:
  description: The newest C(hnroot history) lines, oldest first.
  returned: when history_lines > 0
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.hnroot.fleet.plugins.module_utils.hnroot import (
    hnroot_argument_spec,
    location_args,
    run_json,
    summary,
)


def history_lines(module, n):
    """The newest `n` lines of `hnroot history` (text, as an operator reads it)."""
    cmd = [module.params["binary"], "history"] + location_args(module.params)
    rc, out, err = module.run_command(cmd)
    if rc != 0:
        return ["(hnroot history failed, exit %d: %s)" % (rc, (err or out).strip())]
    lines = [l for l in out.splitlines() if l.strip()]
    return lines[-n:]


def main():
    spec = hnroot_argument_spec()
    spec.update(history_lines=dict(type="int", default=0))
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    facts = summary(run_json(module, ["status", "--json"]))
    result = dict(changed=False, hnroot=facts, ansible_facts=dict(hnroot=facts))
    if module.params["history_lines"] > 0:
        result["history"] = history_lines(module, module.params["history_lines"])
    module.exit_json(**result)


if __name__ == "__main__":
    main()
