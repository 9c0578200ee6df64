#!/usr/bin/python
# -*- coding: utf-8 -*-
"""hnroot_revert: ask for a revert to the previous image on the next boot (`hnroot revert`)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: hnroot_revert
short_description: Ask an hnroot server to boot its previous image next
description:
  - Runs C(hnroot revert), which creates C(system-revert) on hostpart so that the next boot goes
    back to C(hn-root-old.img) (and keeps the image reverted from as C(hn-root-broken.img)).
    The module does not reboot; follow it with C(ansible.builtin.reboot).
  - C(changed) is false when a revert is already requested. In check mode nothing is written.
  - hnroot refuses (and the task fails, saying why) when the next boot could not revert.
options:
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
- name: Go back to the previous image on the next boot
  hnroot.fleet.hnroot_revert:

- name: Reboot into it
  ansible.builtin.reboot:
"""

RETURN = r"""
next_boot:
  description: What the next boot will do, as hnroot's decision record.
  returned: always
  type: str
message:
  description: What hnroot said.
  returned: when changed and not in check mode
  type: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.hnroot.fleet.plugins.module_utils.hnroot import (
    hnroot_argument_spec,
    location_args,
    run_json,
    summary,
)


def main():
    module = AnsibleModule(argument_spec=hnroot_argument_spec(), supports_check_mode=True)
    before = summary(run_json(module, ["status", "--json"]))
    if before["revert_requested"]:
        module.exit_json(changed=False, next_boot=before["next_boot"])
    if module.check_mode:
        module.exit_json(changed=True, next_boot=before["next_boot"])
    cmd = [module.params["binary"], "revert"] + location_args(module.params)
    rc, out, err = module.run_command(cmd)
    if rc != 0:
        module.fail_json(msg="hnroot revert refused (exit %d): %s" % (rc, (err or out).strip()), rc=rc)
    after = summary(run_json(module, ["status", "--json"]))
    module.exit_json(changed=True, next_boot=after["next_boot"], message=out.strip())


if __name__ == "__main__":
    main()
