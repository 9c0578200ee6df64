/* hnroot-grub.h - what the files of hnroot.mod share.  */
/*
 *  hnroot.mod is split by job, and none of its files decides anything; every judgement is
 *  hnroot-core's, reached through hnroot-ffi (hnroot.h):
 *
 *    hnroot.c     the `hnroot select|status' command: observe, decide, write, set variables
 *    probe.c      run the core's filesystem and partition-table probers over a GRUB disk
 *    device.c     find hostpart and the ESP (by label, or as given) and their PARTUUIDs
 *    observe.c    what hostpart's top directory holds: the facts on each image, the marker
 *    bootstate.c  read the boot-state file, and rewrite it in place through its block list
 *    verify.c     under lockdown (Secure Boot), vouch for the kernel and initrd a held seal
 *                 states, and for nothing else
 *
 *  SPDX-License-Identifier: GPL-3.0-or-later
 */

#ifndef HNROOT_GRUB_H
#define HNROOT_GRUB_H 1

#include <grub/types.h>
#include <grub/disk.h>
#include <grub/file.h>
#include <grub/err.h>

#include <hnroot.h>

/* The name of the loopback disk an image is opened as while it is observed.  */
#define HNROOT_LOOP_NAME	"hnroot_probe"
/* Every line hnroot prints fits in this.  */
#define HNROOT_MESSAGE_LEN	1024
#define HNROOT_UUID_TEXT_LEN	40
/* Bounds: devices examined when searching by label, partition-table entries looked at,
   block-list pieces of the boot-state file, entries of hostpart's top directory read.  */
#define HNROOT_MAX_DEVICES	1024
#define HNROOT_MAX_PARTITIONS	1024
#define HNROOT_MAX_PIECES	16
#define HNROOT_MAX_DIR_ENTRIES	100000

/* probe.c: the core's probers and what they hand back, allocated (zeroed) once per command:
   the prober storage is about 1 KiB and the read buffer HNROOT_PROBE_MAX_READ bytes, too
   much for GRUB's stack.  */
struct hnroot_probe_ctx
{
  struct hnroot_fs_probe *fs;
  struct hnroot_pt_probe *pt;
  struct hnroot_fs_info *info;
  struct hnroot_partition *part;
  grub_uint8_t *buf;
};

grub_err_t hnroot_grub_probe_alloc (struct hnroot_probe_ctx *ctx);
void hnroot_grub_probe_free (struct hnroot_probe_ctx *ctx);
grub_err_t hnroot_grub_ffi_error (const char *function, hnroot_result r);
grub_err_t hnroot_grub_disk_size (grub_disk_t disk, grub_uint64_t *size);
grub_err_t hnroot_grub_read (grub_disk_t disk, grub_uint64_t offset, grub_size_t len,
			     void *buf);
grub_err_t hnroot_grub_probe_fs (grub_disk_t disk, grub_uint64_t size,
				 struct hnroot_probe_ctx *ctx);
grub_err_t hnroot_grub_probe_pt (grub_disk_t whole, grub_uint64_t size,
				 struct hnroot_probe_ctx *ctx);

/* device.c  */
char *hnroot_grub_device (const char *given, const char *label, const char *option,
			  struct hnroot_probe_ctx *ctx);
char *hnroot_grub_part_uuid (const char *device, const char *role, const char *label,
			     struct hnroot_probe_ctx *ctx);

/* Kernel arguments read from a file (the host's on hostpart, an image's inside it): how it
   was found (HNROOT_ARGS_*) and up to HNROOT_ARGS_FILE_MAX + 1 of its bytes (the core refuses
   a longer file).  */
struct hnroot_grub_args
{
  grub_uint8_t kind;
  grub_size_t len;
  grub_uint8_t bytes[HNROOT_ARGS_FILE_MAX + 1];
};

/* The loader's seal policy (from its memdisk, named by grub.cfg): the trusted keys, the
   `.pub' files one after another (KEYS NULL: none), and whether only sealed images boot.  */
struct hnroot_grub_seal_policy
{
  grub_uint8_t *keys;
  grub_size_t keys_len;
  grub_uint8_t require;
};

/* The most bytes a key file may have: HNROOT_SEAL_MAX_KEYS minisign `.pub' files.  */
#define HNROOT_SEAL_KEYS_FILE_MAX	(HNROOT_SEAL_MAX_KEYS * 256)

/* observe.c: fills OBS->images and OBS->revert_requested, and ARGS[i] with the kernel
   arguments each bootable image carries; judges each bootable image's seal under POLICY
   (its last block, and the SHA-256 of its boot files when sealed); prints why each image
   that is there does not boot, or with EVERY each image's verdict.  */
grub_err_t hnroot_grub_observe (const char *hostpart, struct hnroot_probe_ctx *ctx,
				const struct hnroot_grub_seal_policy *policy,
				struct hnroot_observation *obs, struct hnroot_grub_args *args,
				int every);
/* Read the loader's seal policy: the trusted keys of KEYS_PATH and whether REQUIRE_PATH is
   there (either NULL: not given).  A key file that cannot be read or is too long fails: the
   loader was assembled wrong.  */
grub_err_t hnroot_grub_seal_policy_read (const char *keys_path, const char *require_path,
					 struct hnroot_grub_seal_policy *policy);
/* Read the arguments file at PATH into ARGS; what is found there is a fact, not a failure.
   Fails only for memory.  */
grub_err_t hnroot_grub_read_args (const char *path, struct hnroot_grub_args *args);

/* verify.c: the seals that held in the last observation (reset, then one added per image
   whose seal and boot files held), and the verifier that checks `linux' and `initrd' against
   them under lockdown.  */
void hnroot_grub_trust_reset (void);
void hnroot_grub_trust_seal (const struct hnroot_seal *seal);
void hnroot_grub_verifier_register (void);
void hnroot_grub_verifier_unregister (void);

/* bootstate.c  */
struct hnroot_piece
{
  grub_disk_addr_t sector;
  unsigned offset;
  unsigned length;
};

struct hnroot_state_file
{
  /* HNROOT_STATE_FILE_*.  */
  grub_uint8_t kind;
  /* The bytes read (at most one more than a valid file has), for HNROOT_STATE_FILE_READ.  */
  grub_uint8_t *bytes;
  grub_size_t len;
  /* Why it is unreadable, for HNROOT_STATE_FILE_UNREADABLE.  */
  char *why;
  /* Kept open to write through its block list.  */
  grub_file_t file;
  struct hnroot_piece pieces[HNROOT_MAX_PIECES];
  unsigned count;
  int overflow;
};

grub_err_t hnroot_grub_state_read (const char *path, struct hnroot_state_file *state);
grub_err_t hnroot_grub_state_write (struct hnroot_state_file *state,
				    const struct hnroot_bootstate *write);
void hnroot_grub_state_close (struct hnroot_state_file *state);

#endif
