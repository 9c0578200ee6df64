/* observe.c - what hostpart's top directory holds, as facts for the core.  */
/*
 *  One listing of hostpart's top directory says which of the image names and the revert
 *  marker are there (a name is there even when it is a link that leads nowhere, a FIFO or a
 *  directory) and which are directories.  For each other image name that is there, GRUB
 *  opens it as its drivers do (a symbolic link resolved inside hostpart; a name that does not
 *  open as a regular file is "unopenable", whatever the reason), takes the file's own
 *  length, runs the core's
 *  filesystem prober over it as a loopback disk, and, when the core asks, opens
 *  /boot/kernel and /boot/initramfs in it with the one driver of the type found (GRUB's
 *  autoloading switched off).  hnroot_image_verdict turns these facts into the observation;
 *  the initramfs and the CLI gather the same facts the Linux way and get the same verdict.
 *
 *  SPDX-License-Identifier: GPL-3.0-or-later
 */

#include <grub/types.h>
#include <grub/mm.h>
#include <grub/misc.h>
#include <grub/err.h>
#include <grub/dl.h>
#include <grub/disk.h>
#include <grub/device.h>
#include <grub/file.h>
#include <grub/fs.h>
#include <grub/command.h>
#include <grub/crypto.h>
#include <grub/i18n.h>

#include "hnroot-grub.h"

/* What the listing found for each name hnroot knows.  */
struct listing
{
  int present[HNROOT_IMAGE_COUNT];
  int directory[HNROOT_IMAGE_COUNT];
  int marker;
  unsigned entries;
  int truncated;
};

static int
list_hook (const char *filename, const struct grub_dirhook_info *info, void *data)
{
  struct listing *l = data;
  unsigned i;

  if (l->entries >= HNROOT_MAX_DIR_ENTRIES)
    {
      l->truncated = 1;
      return 1;
    }
  l->entries++;
  if (grub_strcmp (filename, HNROOT_REVERT_MARKER) == 0)
    {
      l->marker = 1;
      return 0;
    }
  for (i = 0; i < HNROOT_IMAGE_COUNT; i++)
    if (grub_strcmp (filename, (const char *) hnroot_image_file_name (i)) == 0)
      {
	l->present[i] = 1;
	l->directory[i] = info->dir;
      }
  return 0;
}

/* List hostpart's top directory once.  */
static grub_err_t
list_top (const char *hostpart, struct listing *l)
{
  grub_device_t dev;
  grub_fs_t fs;

  dev = grub_device_open (hostpart);
  if (! dev)
    return grub_errno;
  fs = grub_fs_probe (dev);
  if (fs)
    (fs->fs_dir) (dev, "/", list_hook, l);
  grub_device_close (dev);
  if (grub_errno)
    return grub_error (grub_errno, N_("cannot list hostpart's top directory (%s): %s"),
		       hostpart, grub_errmsg);
  if (l->truncated)
    return grub_error (GRUB_ERR_OUT_OF_RANGE,
		       N_("hostpart's top directory (%s) has more than %u entries; hnroot reads "
			  "no further: move files into data/"), hostpart, HNROOT_MAX_DIR_ENTRIES);
  return GRUB_ERR_NONE;
}

/* Run another GRUB command (loopback) with ARGC arguments.  */
static grub_err_t
run_command (const char *name, int argc, char **argv)
{
  grub_command_t cmd;

  cmd = grub_command_find (name);
  if (! cmd)
    return grub_error (GRUB_ERR_UNKNOWN_COMMAND,
		       N_("command `%s' not found (module %s not loaded)"), name, name);
  return (cmd->func) (cmd, argc, argv);
}

/* GRUB's module for filesystem type FS_TYPE; NULL for a type no image can have (the core
   refuses those before it asks for the boot files).  */
static const char *
driver_module (grub_uint8_t fs_type)
{
  switch (fs_type)
    {
    case HNROOT_FS_TYPE_EXT2:
    case HNROOT_FS_TYPE_EXT3:
    case HNROOT_FS_TYPE_EXT4:
    case HNROOT_FS_TYPE_EXT4DEV: return "ext2";
    case HNROOT_FS_TYPE_XFS: return "xfs";
    case HNROOT_FS_TYPE_BTRFS: return "btrfs";
    default: return NULL;
    }
}

/* Whether PATH opens as a regular file with at least one byte (the core's rule for boot
   files, hnroot_core::verdict::boot_file: an empty kernel boots nothing) through the loopback
   disk's filesystem, read by the already loaded driver MODULE only.  Sets *DISAGREES when
   another driver read it.  */
static int
opens_as (const char *path, const char *module, int *disagrees)
{
  grub_fs_autoload_hook_t autoload = grub_fs_autoload_hook;
  grub_file_t file;
  int ok = 0;

  grub_fs_autoload_hook = NULL;
  file = grub_file_open (path, GRUB_FILE_TYPE_GET_SIZE | GRUB_FILE_TYPE_NO_DECOMPRESS);
  grub_fs_autoload_hook = autoload;
  if (! file)
    {
      /* Expected: the answer is "missing".  */
      grub_errno = GRUB_ERR_NONE;
      return 0;
    }
  if (file->fs && grub_strcmp (file->fs->name, module) == 0)
    ok = grub_file_size (file) > 0;
  else
    *disagrees = 1;
  grub_file_close (file);
  return ok;
}

/* The boot files of the image on the loopback disk, read with FS_TYPE's GRUB driver.  */
static grub_uint8_t
boot_files (grub_uint8_t fs_type)
{
  const char *module = driver_module (fs_type);
  int kernel, initramfs, disagrees = 0;

  if (! module)
    return HNROOT_BOOT_FILES_NO_DRIVER;
  /* The one driver this filesystem needs, and no autoloading of the others.  */
  if (! grub_dl_load (module))
    {
      grub_printf ("hnroot: GRUB cannot load its `%s' module: %s\n", module,
		   grub_errno ? grub_errmsg : "module loading is off");
      grub_errno = GRUB_ERR_NONE;
      return HNROOT_BOOT_FILES_NO_DRIVER;
    }
  kernel = opens_as ("(" HNROOT_LOOP_NAME ")/" HNROOT_KERNEL_PATH, module, &disagrees);
  initramfs = opens_as ("(" HNROOT_LOOP_NAME ")/" HNROOT_INITRAMFS_PATH, module, &disagrees);
  if (disagrees)
    return HNROOT_BOOT_FILES_DRIVER_DISAGREES;
  if (kernel && initramfs)
    return HNROOT_BOOT_FILES_PRESENT;
  if (! kernel && ! initramfs)
    return HNROOT_BOOT_FILES_NEITHER;
  return kernel ? HNROOT_BOOT_FILES_NO_INITRAMFS : HNROOT_BOOT_FILES_NO_KERNEL;
}

grub_err_t
hnroot_grub_read_args (const char *path, struct hnroot_grub_args *args)
{
  grub_fs_autoload_hook_t autoload = grub_fs_autoload_hook;
  grub_file_t file;
  grub_ssize_t n;

  args->kind = HNROOT_ARGS_ABSENT;
  args->len = 0;
  /* The driver already loaded for this filesystem, no other.  */
  grub_fs_autoload_hook = NULL;
  file = grub_file_open (path, GRUB_FILE_TYPE_CONFIG | GRUB_FILE_TYPE_NO_DECOMPRESS);
  grub_fs_autoload_hook = autoload;
  if (! file)
    {
      if (grub_errno == GRUB_ERR_OUT_OF_MEMORY)
	return grub_errno;
      /* Expected: most images and hosts have none.  A name that is there but does not open
	 as a file is told apart by the core only as far as GRUB can: missing.  */
      grub_errno = GRUB_ERR_NONE;
      return GRUB_ERR_NONE;
    }
  n = grub_file_read (file, args->bytes, sizeof (args->bytes));
  grub_file_close (file);
  if (n < 0)
    {
      if (grub_errno == GRUB_ERR_OUT_OF_MEMORY)
	return grub_errno;
      grub_dprintf ("hnroot", "%s: %s\n", path, grub_errmsg);
      grub_errno = GRUB_ERR_NONE;
      args->kind = HNROOT_ARGS_UNREADABLE;
      return GRUB_ERR_NONE;
    }
  args->kind = HNROOT_ARGS_READ;
  args->len = n;
  return GRUB_ERR_NONE;
}

/* Open PATH without filters for reading its bytes as they are, with only the filesystem
   driver already loaded.  */
static grub_file_t
open_plain (const char *path, enum grub_file_type type)
{
  grub_fs_autoload_hook_t autoload = grub_fs_autoload_hook;
  grub_file_t file;

  grub_fs_autoload_hook = NULL;
  file = grub_file_open (path, type | GRUB_FILE_TYPE_NO_DECOMPRESS);
  grub_fs_autoload_hook = autoload;
  return file;
}

grub_err_t
hnroot_grub_seal_policy_read (const char *keys_path, const char *require_path,
			      struct hnroot_grub_seal_policy *policy)
{
  grub_file_t file;
  grub_ssize_t n;

  grub_memset (policy, 0, sizeof (*policy));
  if (require_path)
    {
      file = open_plain (require_path, GRUB_FILE_TYPE_CONFIG);
      if (file)
	{
	  policy->require = 1;
	  grub_file_close (file);
	}
      else if (grub_errno == GRUB_ERR_OUT_OF_MEMORY)
	return grub_errno;
      grub_errno = GRUB_ERR_NONE;
    }
  if (! keys_path)
    return GRUB_ERR_NONE;
  file = open_plain (keys_path, GRUB_FILE_TYPE_CONFIG);
  if (! file)
    {
      if (grub_errno == GRUB_ERR_OUT_OF_MEMORY)
	return grub_errno;
      /* No keys: a sealed image's key is unknown, and its seal does not hold.  */
      grub_errno = GRUB_ERR_NONE;
      return GRUB_ERR_NONE;
    }
  policy->keys = grub_malloc (HNROOT_SEAL_KEYS_FILE_MAX + 1);
  if (! policy->keys)
    {
      grub_file_close (file);
      return grub_errno;
    }
  n = grub_file_read (file, policy->keys, HNROOT_SEAL_KEYS_FILE_MAX + 1);
  grub_file_close (file);
  if (n < 0 || n > HNROOT_SEAL_KEYS_FILE_MAX)
    {
      grub_free (policy->keys);
      policy->keys = NULL;
      if (grub_errno == GRUB_ERR_OUT_OF_MEMORY)
	return grub_errno;
      grub_errno = GRUB_ERR_NONE;
      return grub_error (GRUB_ERR_BAD_FILE_TYPE, N_("the trusted keys %s are %s; this loader "
						    "was assembled wrong"), keys_path,
			 n < 0 ? "unreadable" : "too long");
    }
  policy->keys_len = n;
  return GRUB_ERR_NONE;
}

/* SHA-256 of the file at PATH into DIGEST, its bytes as they are.  *READ is 0 when it could
   not be read whole (a fact).  Fails only for memory.  */
static grub_err_t
file_sha256 (const char *path, grub_uint8_t *digest, int *read)
{
  const gcry_md_spec_t *md = GRUB_MD_SHA256;
  enum { CHUNK = 256 * 1024 };
  grub_file_t file;
  grub_uint8_t *buf;
  void *ctx;
  grub_ssize_t n;

  *read = 0;
  file = open_plain (path, GRUB_FILE_TYPE_TO_HASH);
  if (! file)
    {
      if (grub_errno == GRUB_ERR_OUT_OF_MEMORY)
	return grub_errno;
      grub_errno = GRUB_ERR_NONE;
      return GRUB_ERR_NONE;
    }
  buf = grub_malloc (CHUNK);
  ctx = grub_zalloc (md->contextsize);
  if (! buf || ! ctx)
    {
      grub_free (buf);
      grub_free (ctx);
      grub_file_close (file);
      return grub_errno;
    }
  md->init (ctx);
  while ((n = grub_file_read (file, buf, CHUNK)) > 0)
    md->write (ctx, buf, n);
  if (n == 0)
    {
      md->final (ctx);
      grub_memcpy (digest, md->read (ctx), md->mdlen);
      *read = 1;
    }
  else if (grub_errno != GRUB_ERR_OUT_OF_MEMORY)
    grub_errno = GRUB_ERR_NONE;
  grub_free (ctx);
  grub_free (buf);
  grub_file_close (file);
  return grub_errno;
}

/* The seal of image file PATH, its filesystem found by the prober and its boot files there on
   the loopback disk: the core judges its last block under POLICY; when the seal holds, the
   SHA-256 of /boot/kernel and /boot/initramfs as GRUB reads them (the bytes `linux' and
   `initrd' load next) must be the ones it states.  Sets FACTS->seal, ->seal_problem and
   ->root_hash (the core puts a held seal's on the image's kernel command line).
   Fails only for memory or a loader assembled wrong.  */
static grub_err_t
judge_seal (const char *path, struct hnroot_probe_ctx *ctx,
	    const struct hnroot_grub_seal_policy *policy, struct hnroot_image_facts *facts)
{
  static const struct { grub_uint8_t which; const char *path; } boot_files[] =
    {
      { HNROOT_BOOT_FILE_KERNEL, "(" HNROOT_LOOP_NAME ")/" HNROOT_KERNEL_PATH },
      { HNROOT_BOOT_FILE_INITRAMFS, "(" HNROOT_LOOP_NAME ")/" HNROOT_INITRAMFS_PATH },
    };
  struct hnroot_seal seal;
  grub_uint8_t *block = NULL, digest[32], matches, problem;
  grub_file_t file;
  hnroot_result r;
  unsigned i;
  int read;

  if (facts->length >= HNROOT_SEAL_BLOCK_LEN)
    {
      block = grub_malloc (HNROOT_SEAL_BLOCK_LEN);
      if (! block)
	return grub_errno;
      file = open_plain (path, GRUB_FILE_TYPE_TO_HASH);
      read = file && grub_file_seek (file, facts->length - HNROOT_SEAL_BLOCK_LEN)
	!= (grub_off_t) -1
	&& grub_file_read (file, block, HNROOT_SEAL_BLOCK_LEN) == HNROOT_SEAL_BLOCK_LEN;
      if (file)
	grub_file_close (file);
      if (! read)
	{
	  /* The prober read the filesystem, not the file's end: unreadable all the same.  */
	  grub_free (block);
	  if (grub_errno == GRUB_ERR_OUT_OF_MEMORY)
	    return grub_errno;
	  grub_dprintf ("hnroot", "%s: its last block: %s\n", path, grub_errmsg);
	  grub_errno = GRUB_ERR_NONE;
	  facts->probe = HNROOT_PROBE_READ_ERROR;
	  return GRUB_ERR_NONE;
	}
    }
  r = hnroot_seal_judge (ctx->fs, facts->length, block, policy->keys, policy->keys_len, &seal);
  grub_free (block);
  if (r != HNROOT_RESULT_OK)
    return hnroot_grub_ffi_error ("hnroot_seal_judge", r);
  facts->seal = seal.kind;
  facts->seal_problem = seal.problem;
  grub_memcpy (facts->root_hash, seal.root_hash, sizeof (facts->root_hash));
  /* The kernel first; the first mismatch is the problem recorded.  */
  for (i = 0; facts->seal == HNROOT_SEAL_SEALED && i < ARRAY_SIZE (boot_files); i++)
    {
      if (file_sha256 (boot_files[i].path, digest, &read) != GRUB_ERR_NONE)
	return grub_errno;
      if (! read)
	{
	  /* Opened a moment ago by boot_files (): unreadable now, so not bootable.  */
	  facts->probe = HNROOT_PROBE_READ_ERROR;
	  return GRUB_ERR_NONE;
	}
      r = hnroot_seal_check_file (&seal, boot_files[i].which, digest, &matches, &problem);
      if (r != HNROOT_RESULT_OK)
	return hnroot_grub_ffi_error ("hnroot_seal_check_file", r);
      if (! matches)
	{
	  facts->seal = HNROOT_SEAL_BROKEN;
	  facts->seal_problem = problem;
	}
    }
  /* Held, boot files and all: what `linux' and `initrd' may load under lockdown.  */
  if (facts->seal == HNROOT_SEAL_SEALED)
    hnroot_grub_trust_seal (&seal);
  return GRUB_ERR_NONE;
}

/* The facts on image file PATH (already known to be there and not a directory): its length,
   the prober's answer on it, its boot files; and, when it has them, the kernel arguments it
   carries, into ARGS.  Errors of the file itself are facts, not failures: grub_errno is
   cleared for them.  Fails only for memory or a bug.  */
static grub_err_t
gather (const char *path, struct hnroot_probe_ctx *ctx,
	const struct hnroot_grub_seal_policy *policy, struct hnroot_image_facts *facts,
	struct hnroot_grub_args *args)
{
  char *add_args[] = { (char *) HNROOT_LOOP_NAME, (char *) path };
  char *del_args[] = { (char *) "-d", (char *) HNROOT_LOOP_NAME };
  grub_file_t file;
  grub_disk_t disk = NULL;
  grub_uint8_t fs_type;
  hnroot_result r;

  file = grub_file_open (path, GRUB_FILE_TYPE_GET_SIZE | GRUB_FILE_TYPE_NO_DECOMPRESS);
  if (! file)
    {
      /* Listed, not a directory, and no regular file opens: one fact, whatever GRUB says.
	 Its error does not tell a FIFO or device node from a link leading nowhere: the ext2
	 and XFS drivers skip entries of other types when they look a name up ("file not
	 found", as for a dangling link), btrfs says "not a regular file", as every driver
	 does for a link to a directory.  */
      facts->entry = HNROOT_ENTRY_UNOPENABLE;
      grub_dprintf ("hnroot", "%s: %s\n", path, grub_errmsg);
      grub_errno = GRUB_ERR_NONE;
      return GRUB_ERR_NONE;
    }
  facts->entry = HNROOT_ENTRY_FILE;
  /* The file's own length: the loopback disk below rounds it up to whole sectors.  */
  facts->length = grub_file_size (file);
  grub_file_close (file);

  if (run_command ("loopback", 2, add_args) != GRUB_ERR_NONE)
    {
      if (grub_errno == GRUB_ERR_UNKNOWN_COMMAND || grub_errno == GRUB_ERR_OUT_OF_MEMORY)
	return grub_errno;
      facts->probe = HNROOT_PROBE_READ_ERROR;
      grub_errno = GRUB_ERR_NONE;
      return GRUB_ERR_NONE;
    }
  disk = grub_disk_open (HNROOT_LOOP_NAME);
  if (! disk || hnroot_grub_probe_fs (disk, facts->length, ctx) != GRUB_ERR_NONE)
    {
      if (grub_errno == GRUB_ERR_BUG || grub_errno == GRUB_ERR_OUT_OF_MEMORY)
	goto done;
      grub_dprintf ("hnroot", "%s: %s\n", path, grub_errmsg);
      facts->probe = HNROOT_PROBE_READ_ERROR;
      grub_errno = GRUB_ERR_NONE;
      goto done;
    }
  facts->probe = HNROOT_PROBE_DONE;
  r = hnroot_image_needs_boot_files (facts, ctx->fs, &fs_type);
  if (r == HNROOT_RESULT_OK)
    {
      facts->boot_files = boot_files (fs_type);
      /* Read with the driver boot_files loaded, while the loopback is there.  */
      if (facts->boot_files == HNROOT_BOOT_FILES_PRESENT
	  && (hnroot_grub_read_args ("(" HNROOT_LOOP_NAME ")/" HNROOT_IMAGE_ARGS_PATH, args)
	      != GRUB_ERR_NONE
	      || judge_seal (path, ctx, policy, facts) != GRUB_ERR_NONE))
	goto done;
    }
  else if (r != HNROOT_RESULT_DONE)
    hnroot_grub_ffi_error ("hnroot_image_needs_boot_files", r);

 done:
  if (disk)
    grub_disk_close (disk);
  if (grub_errno == GRUB_ERR_NONE)
    return run_command ("loopback", 2, del_args);
  /* A failure of our own (memory, a bug): keep its message over the clean-up's.  */
  grub_error_push ();
  run_command ("loopback", 2, del_args);
  grub_error_pop ();
  return grub_errno;
}

/* Observe hostpart (GRUB device HOSTPART): every image name, the kernel arguments each
   bootable one carries, and the revert marker.  Each
   image that is there but does not boot gets a line saying why; with EVERY (hnroot status),
   every image name gets its verdict line: `absent', `ext4 UUID=... (N bytes)' or
   `not bootable (CODE): why'.  */
grub_err_t
hnroot_grub_observe (const char *hostpart, struct hnroot_probe_ctx *ctx,
		     const struct hnroot_grub_seal_policy *policy,
		     struct hnroot_observation *obs, struct hnroot_grub_args *args, int every)
{
  struct listing l;
  struct hnroot_image_facts facts;
  char text[HNROOT_MESSAGE_LEN];
  char *path;
  hnroot_result r;
  unsigned i;

  grub_memset (&l, 0, sizeof (l));
  hnroot_grub_trust_reset ();
  if (list_top (hostpart, &l) != GRUB_ERR_NONE)
    return grub_errno;
  obs->revert_requested = l.marker;
  for (i = 0; i < HNROOT_IMAGE_COUNT; i++)
    {
      grub_memset (&facts, 0, sizeof (facts));
      facts.require_sealed = policy->require;
      path = grub_xasprintf ("(%s)/%s", hostpart, (const char *) hnroot_image_file_name (i));
      if (! path)
	return grub_errno;
      if (! l.present[i])
	facts.entry = HNROOT_ENTRY_ABSENT;
      else if (l.directory[i])
	facts.entry = HNROOT_ENTRY_DIRECTORY;
      else if (gather (path, ctx, policy, &facts, &args[i]) != GRUB_ERR_NONE)
	{
	  grub_free (path);
	  return grub_errno;
	}
      r = hnroot_image_verdict (&facts, ctx->fs, &obs->images[i], (grub_uint8_t *) text,
				sizeof (text));
      if (r != HNROOT_RESULT_OK)
	{
	  grub_free (path);
	  return hnroot_grub_ffi_error ("hnroot_image_verdict", r);
	}
      if (every || obs->images[i].kind == HNROOT_IMAGE_NOT_BOOTABLE)
	grub_printf ("hnroot: %s: %s\n", path, text);
      grub_free (path);
    }
  return GRUB_ERR_NONE;
}
