/* hnroot.c - choose the root image to boot before the kernel loads.  */
/*
 *  hnroot's GRUB module: observes hostpart (which hn-root*.img files exist, whether each is a
 *  filesystem GRUB can read and with which UUID, whether system-revert exists) and the
 *  boot-state block on the ESP, asks hnroot-core (through hnroot-ffi) what to boot, writes the
 *  boot state the core returns in place (as save_env does), and hands the choice to grub.cfg
 *  through environment variables.  It makes no decision of its own.
 *
 *  SPDX-License-Identifier: GPL-3.0-or-later
 *  (linked into GRUB, whose module interface is GPLv3+).
 */

#include <grub/types.h>
#include <grub/dl.h>
#include <grub/mm.h>
#include <grub/err.h>
#include <grub/misc.h>
#include <grub/env.h>
#include <grub/file.h>
#include <grub/disk.h>
#include <grub/device.h>
#include <grub/fs.h>
#include <grub/partition.h>
#include <grub/command.h>
#include <grub/extcmd.h>
#include <grub/time.h>
#include <grub/i18n.h>

#include <hnroot.h>

GRUB_MOD_LICENSE ("GPLv3+");

#ifndef HNROOT_GRUB_VERSION
#error "HNROOT_GRUB_VERSION (the Debian grub2 version built against) must be defined"
#endif

/* Until hnroot.h exports it: the boot-state file is two 512-byte copies.  */
#ifndef HNROOT_BOOTSTATE_LEN
#define HNROOT_BOOTSTATE_LEN 1024
#endif

#define HNROOT_STATE_PATH	"/hnroot/bootstate"
#define HNROOT_REVERT_MARKER	"/system-revert"
#define HNROOT_HOSTPART_LABEL	"hostpart"
#define HNROOT_ESP_LABEL	"EFI-BOOT"
#define HNROOT_LOOP_NAME	"hnroot_probe"
#define HNROOT_MESSAGE_LEN	1024
#define HNROOT_UUID_TEXT_LEN	40
/* Bounds: devices examined when searching by label, block-list pieces of the state file.  */
#define HNROOT_MAX_DEVICES	128
#define HNROOT_MAX_CANDIDATES	8
#define HNROOT_MAX_PIECES	16

static const struct grub_arg_option options[] =
  {
    {"hostpart", 'p', 0,
     N_("Device holding the images (default: the filesystem labelled `hostpart')."),
     N_("DEVICE"), ARG_TYPE_STRING},
    {"esp", 'e', 0,
     N_("Device holding " HNROOT_STATE_PATH " (default: the filesystem labelled `EFI-BOOT')."),
     N_("DEVICE"), ARG_TYPE_STRING},
    {"tries", 't', 0,
     N_("Boots a new image gets before it is rolled back (1-100, default 3)."),
     N_("N"), ARG_TYPE_INT},
    {"set-prefix", 's', 0,
     N_("Prefix of the variables set (default `hnroot_')."),
     N_("PREFIX"), ARG_TYPE_STRING},
    {0, 0, 0, 0, 0, 0}
  };

enum options
  {
    HNROOT_HOSTPART,
    HNROOT_ESP,
    HNROOT_TRIES,
    HNROOT_SET_PREFIX,
  };

/* The core's Reason::code(), by HNROOT_REASON_* number.  */
static const char *const reason_codes[] =
  {
    [HNROOT_REASON_NOTHING_BOOTABLE] = "nothing-bootable",
    [HNROOT_REASON_NORMAL] = "normal",
    [HNROOT_REASON_UPDATE] = "update",
    [HNROOT_REASON_TRIAL] = "trial",
    [HNROOT_REASON_MANUAL_REVERT] = "manual-revert",
    [HNROOT_REASON_REVERT_REFUSED] = "revert-refused",
    [HNROOT_REASON_AUTOMATIC_ROLLBACK] = "automatic-rollback",
    [HNROOT_REASON_TRIAL_EXHAUSTED] = "trial-exhausted",
    [HNROOT_REASON_RECOVERY_MISSING] = "recovery",
    [HNROOT_REASON_RECOVERY_UNREADABLE] = "recovery",
  };

/* Called by hnroot-ffi if the core panics, which it is built not to do.  */
void hnroot_ffi_abort (void) __attribute__ ((noreturn));
void
hnroot_ffi_abort (void)
{
  grub_fatal ("hnroot: the decision core panicked; this is a bug in hnroot");
}

/* One contiguous run of the state file on disk, as the read hook saw it.  */
struct piece
{
  grub_disk_addr_t sector;
  unsigned offset;
  unsigned length;
};

struct blocklist
{
  struct piece pieces[HNROOT_MAX_PIECES];
  unsigned count;
  int overflow;
};

/* What one device holds, as far as hnroot cares.  */
struct fs_seen
{
  const char *fs_name;
  char *label;
  struct hnroot_uuid uuid;
};

static const char *
result_text (hnroot_result r)
{
  switch (r)
    {
    case HNROOT_RESULT_OK: return "ok";
    case HNROOT_RESULT_NULL_ARGUMENT: return "NULL argument";
    case HNROOT_RESULT_BUFFER_TOO_SHORT: return "buffer too short";
    case HNROOT_RESULT_INVALID_ARGUMENT: return "invalid argument";
    case HNROOT_RESULT_BOOTSTATE_SIZE: return "boot-state file has the wrong size";
    case HNROOT_RESULT_NOTHING_TO_WRITE: return "nothing to write";
    case HNROOT_RESULT_BOOTSTATE_SEQUENCE: return "boot-state sequence exhausted";
    default: return "unexpected result";
    }
}

static int
hex_value (char c)
{
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

/* GRUB's textual filesystem UUID (blkid's form) to hnroot_uuid: 32 hex digits are a UUID,
   8 a FAT volume id; dashes are ignored.  Returns 0 on success.  */
static int
uuid_from_text (const char *text, struct hnroot_uuid *out)
{
  grub_uint8_t bytes[16];
  unsigned digits = 0;
  const char *p;

  grub_memset (bytes, 0, sizeof (bytes));
  for (p = text; *p; p++)
    {
      int v;

      if (*p == '-')
	continue;
      v = hex_value (*p);
      if (v < 0 || digits >= 32)
	return -1;
      bytes[digits / 2] |= (grub_uint8_t) (digits % 2 ? v : v << 4);
      digits++;
    }
  if (digits != 32 && digits != 8)
    return -1;
  out->kind = digits == 32 ? HNROOT_UUID_128 : HNROOT_UUID_FAT;
  grub_memcpy (out->bytes, bytes, sizeof (out->bytes));
  return 0;
}

/* The one place that identifies the filesystem on a device.  Interim: GRUB's own filesystem
   drivers give type, label and UUID.  To be replaced by the core's prober (hnroot_fs_probe_*,
   reading through grub_disk_read at the offsets it asks for) once hnroot-ffi exports it, so
   that GRUB, the initramfs and blkid agree.  Fails with grub_errno set; the caller decides
   whether that is expected.  */
static grub_err_t
probe_fs (grub_device_t dev, struct fs_seen *seen, int want_label)
{
  grub_fs_t fs;
  char *uuid = NULL;

  grub_memset (seen, 0, sizeof (*seen));
  fs = grub_fs_probe (dev);
  if (! fs)
    return grub_errno;
  seen->fs_name = fs->name;
  if (want_label && fs->fs_label && fs->fs_label (dev, &seen->label) != GRUB_ERR_NONE)
    return grub_errno;
  if (! fs->fs_uuid)
    return grub_error (GRUB_ERR_BAD_FS, N_("%s filesystem has no UUID"), fs->name);
  if (fs->fs_uuid (dev, &uuid) != GRUB_ERR_NONE)
    return grub_errno;
  if (! uuid || uuid_from_text (uuid, &seen->uuid) != 0)
    grub_error (GRUB_ERR_BAD_FS, N_("%s filesystem UUID `%s' is not a UUID"),
		fs->name, uuid ? uuid : "");
  grub_free (uuid);
  return grub_errno;
}

struct label_search
{
  const char *label;
  char *found[HNROOT_MAX_CANDIDATES];
  unsigned count;
  unsigned examined;
  char *seen_list;
};

/* Append "NAME FS LABEL" to the list of what was seen, for the error message.  */
static void
note_seen (struct label_search *ctx, const char *name, const struct fs_seen *seen)
{
  char *more;

  more = grub_xasprintf ("%s%s%s %s %s", ctx->seen_list ? ctx->seen_list : "",
			 ctx->seen_list ? ", " : "", name,
			 seen && seen->fs_name ? seen->fs_name : "-",
			 seen && seen->label ? seen->label : "-");
  if (! more)
    {
      grub_errno = GRUB_ERR_NONE;
      return;
    }
  grub_free (ctx->seen_list);
  ctx->seen_list = more;
}

static int
label_search_hook (const char *name, void *data)
{
  struct label_search *ctx = data;
  grub_device_t dev;
  struct fs_seen seen;

  if (++ctx->examined > HNROOT_MAX_DEVICES)
    return 1;
  /* Our own probe device is never a candidate.  */
  if (grub_strcmp (name, HNROOT_LOOP_NAME) == 0)
    return 0;
  dev = grub_device_open (name);
  if (! dev)
    {
      grub_errno = GRUB_ERR_NONE;
      return 0;
    }
  if (dev->disk && probe_fs (dev, &seen, 1) == GRUB_ERR_NONE)
    {
      note_seen (ctx, name, &seen);
      if (seen.label && grub_strcmp (seen.label, ctx->label) == 0
	  && ctx->count < HNROOT_MAX_CANDIDATES)
	ctx->found[ctx->count++] = grub_strdup (name);
    }
  /* A device without a filesystem GRUB knows is expected: not ours.  */
  grub_errno = GRUB_ERR_NONE;
  grub_free (seen.label);
  grub_device_close (dev);
  return 0;
}

/* The one device whose filesystem is labelled LABEL, as a malloc'd GRUB device name.  */
static char *
find_by_label (const char *label)
{
  struct label_search ctx;
  char *result = NULL;
  unsigned i;

  grub_memset (&ctx, 0, sizeof (ctx));
  ctx.label = label;
  grub_device_iterate (label_search_hook, &ctx);
  grub_errno = GRUB_ERR_NONE;
  if (ctx.count == 1)
    result = ctx.found[0];
  else if (ctx.count == 0)
    grub_error (GRUB_ERR_UNKNOWN_DEVICE,
		N_("no filesystem labelled `%s' among %u devices (%s)"),
		label, ctx.examined, ctx.seen_list ? ctx.seen_list : "none readable");
  else
    grub_error (GRUB_ERR_BAD_DEVICE,
		N_("%u filesystems are labelled `%s' (%s%s%s): refusing to guess; "
		   "relabel all but one or pass the device explicitly"),
		ctx.count, label, ctx.found[0], ", ", ctx.found[1]);
  for (i = result ? 1 : 0; i < ctx.count; i++)
    grub_free (ctx.found[i]);
  grub_free (ctx.seen_list);
  return result;
}

/* A device given as "(hd0,gpt2)" or "hd0,gpt2", or found by LABEL, as a malloc'd name.  */
static char *
device_name (const char *given, const char *label)
{
  grub_size_t len;

  if (! given)
    return find_by_label (label);
  if (given[0] != '(')
    return grub_strdup (given);
  len = grub_strlen (given);
  if (len < 3 || given[len - 1] != ')')
    {
      grub_error (GRUB_ERR_BAD_ARGUMENT, N_("`%s' is not a device name"), given);
      return NULL;
    }
  return grub_strndup (given + 1, len - 2);
}

/* Run another GRUB command (loopback, probe) with ARGC arguments.  */
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

/* How image file PATH looks: absent, unreadable, or readable with a UUID.  The image is
   opened as a loopback disk, as the menu entry will open it, and probed there.  */
static grub_err_t
observe_image (const char *path, struct hnroot_image_seen *out)
{
  char *add_args[] = { (char *) HNROOT_LOOP_NAME, (char *) path };
  char *del_args[] = { (char *) "-d", (char *) HNROOT_LOOP_NAME };
  grub_device_t dev = NULL;
  struct fs_seen seen;

  grub_memset (out, 0, sizeof (*out));
  grub_memset (&seen, 0, sizeof (seen));
  if (run_command ("loopback", 2, add_args) != GRUB_ERR_NONE)
    {
      if (grub_errno == GRUB_ERR_FILE_NOT_FOUND)
	{
	  /* Expected: most image names are absent most of the time.  */
	  grub_errno = GRUB_ERR_NONE;
	  out->kind = HNROOT_IMAGE_ABSENT;
	  return GRUB_ERR_NONE;
	}
      if (grub_errno == GRUB_ERR_UNKNOWN_COMMAND)
	return grub_errno;
      /* Present but not a regular file GRUB can open: not bootable.  */
      grub_errno = GRUB_ERR_NONE;
      out->kind = HNROOT_IMAGE_UNREADABLE;
      return GRUB_ERR_NONE;
    }
  dev = grub_device_open (HNROOT_LOOP_NAME);
  if (dev && probe_fs (dev, &seen, 0) == GRUB_ERR_NONE)
    {
      out->kind = HNROOT_IMAGE_READABLE;
      out->uuid = seen.uuid;
    }
  else
    out->kind = HNROOT_IMAGE_UNREADABLE;
  /* An image that is no filesystem GRUB reads is an observation, not an error.  */
  grub_errno = GRUB_ERR_NONE;
  if (dev)
    grub_device_close (dev);
  return run_command ("loopback", 2, del_args);
}

static void
read_hook (grub_disk_addr_t sector, unsigned offset, unsigned length, void *data)
{
  struct blocklist *list = data;
  struct piece *last;

  if (list->count > 0)
    {
      last = &list->pieces[list->count - 1];
      /* Merge a run that continues the previous one.  */
      if ((last->sector << GRUB_DISK_SECTOR_BITS) + last->offset + last->length
	  == (sector << GRUB_DISK_SECTOR_BITS) + offset)
	{
	  last->length += length;
	  return;
	}
    }
  if (list->count >= HNROOT_MAX_PIECES)
    {
      list->overflow = 1;
      return;
    }
  list->pieces[list->count].sector = sector;
  list->pieces[list->count].offset = offset;
  list->pieces[list->count].length = length;
  list->count++;
}

/* Read the boot-state file at PATH: *BLOCK gets its bytes (NULL when there is no such file),
   *FILE stays open when WANT_FILE so that the caller can write through its block list.  */
static grub_err_t
read_state (const char *path, grub_uint8_t **block, grub_size_t *len,
	    struct blocklist *list, grub_file_t *file_out)
{
  grub_file_t file;
  grub_ssize_t got;
  grub_size_t size;

  *block = NULL;
  *len = 0;
  file = grub_file_open (path, GRUB_FILE_TYPE_LOADENV | GRUB_FILE_TYPE_SKIP_SIGNATURE
			 | GRUB_FILE_TYPE_NO_DECOMPRESS);
  if (! file)
    {
      if (grub_errno == GRUB_ERR_FILE_NOT_FOUND)
	{
	  /* No boot-state file: the core treats it as absent.  */
	  grub_errno = GRUB_ERR_NONE;
	  return GRUB_ERR_NONE;
	}
      return grub_errno;
    }
  size = grub_file_size (file);
  /* Read at most one byte more than a valid file has: the core judges the size.  */
  if (size > HNROOT_BOOTSTATE_LEN)
    size = HNROOT_BOOTSTATE_LEN + 1;
  *block = grub_zalloc (size ? size : 1);
  if (! *block)
    goto fail;
  file->read_hook = read_hook;
  file->read_hook_data = list;
  got = grub_file_read (file, *block, size);
  file->read_hook = NULL;
  if (got < 0 || (grub_size_t) got != size)
    {
      if (! grub_errno)
	grub_error (GRUB_ERR_FILE_READ_ERROR, N_("short read of `%s'"), path);
      goto fail;
    }
  *len = size;
  *file_out = file;
  return GRUB_ERR_NONE;

 fail:
  grub_free (*block);
  *block = NULL;
  grub_file_close (file);
  return grub_errno;
}

/* Write bytes [OFFSET, OFFSET + LEN) of BLOCK (the whole file as read and re-encoded) in
   place through the file's block list, as save_env does: only where every byte of the file
   was seen on one disk, and only after re-reading the old bytes through the block list and
   finding them equal to what the file read returned.  The written range is read back.  */
static grub_err_t
write_state (grub_file_t file, const struct blocklist *list, const grub_uint8_t *old,
	     const grub_uint8_t *block, grub_size_t file_len,
	     grub_uint32_t offset, grub_uint32_t len)
{
  grub_disk_t disk;
  grub_disk_addr_t part_start;
  grub_size_t index, total = 0;
  grub_uint8_t *check = NULL;
  unsigned i;

  if (! file->device || ! file->device->disk)
    return grub_error (GRUB_ERR_BAD_DEVICE, N_("the boot-state file is not on a disk"));
  if (list->overflow)
    return grub_error (GRUB_ERR_BAD_FILE_TYPE,
		       N_("the boot-state file is in more than %d pieces"), HNROOT_MAX_PIECES);
  for (i = 0; i < list->count; i++)
    total += list->pieces[i].length;
  if (total != file_len)
    return grub_error (GRUB_ERR_BAD_FILE_TYPE,
		       N_("the boot-state file's block list covers %" PRIuGRUB_SIZE
			  " of its %" PRIuGRUB_SIZE " bytes (sparse or inline file)"),
		       total, file_len);
  if ((grub_size_t) offset + len > file_len)
    return grub_error (GRUB_ERR_OUT_OF_RANGE, N_("write past the end of the boot-state file"));
  disk = file->device->disk;
  part_start = grub_partition_get_start (disk->partition);
  check = grub_malloc (file_len);
  if (! check)
    return grub_errno;

  /* The block list must give back exactly what the file read gave.  */
  for (i = 0, index = 0; i < list->count; index += list->pieces[i].length, i++)
    if (grub_disk_read (disk, list->pieces[i].sector - part_start, list->pieces[i].offset,
			list->pieces[i].length, check + index) != GRUB_ERR_NONE)
      goto done;
  if (grub_memcmp (check, old, file_len) != 0)
    {
      grub_error (GRUB_ERR_FILE_READ_ERROR,
		  N_("the boot-state file's block list does not match its contents"));
      goto done;
    }

  /* Write the changed range, piece by piece, then read it back.  */
  for (i = 0, index = 0; i < list->count; index += list->pieces[i].length, i++)
    {
      const struct piece *p = &list->pieces[i];
      grub_size_t start = index > offset ? index : offset;
      grub_size_t end = index + p->length < (grub_size_t) offset + len
	? index + p->length : (grub_size_t) offset + len;

      if (start >= end)
	continue;
      if (grub_disk_write (disk, p->sector - part_start, p->offset + (start - index),
			   end - start, block + start) != GRUB_ERR_NONE)
	goto done;
      if (grub_disk_read (disk, p->sector - part_start, p->offset + (start - index),
			  end - start, check + start) != GRUB_ERR_NONE)
	goto done;
      if (grub_memcmp (check + start, block + start, end - start) != 0)
	{
	  grub_error (GRUB_ERR_WRITE_ERROR,
		      N_("the boot state read back differs from what was written"));
	  goto done;
	}
    }

 done:
  grub_free (check);
  return grub_errno;
}

static grub_err_t
set_var (const char *prefix, const char *name, const char *value)
{
  char *full;

  full = grub_xasprintf ("%s%s", prefix, name);
  if (! full)
    return grub_errno;
  grub_env_set (full, value);
  grub_free (full);
  return grub_errno;
}

static grub_err_t
set_uuid_var (const char *prefix, const char *name, const struct hnroot_uuid *uuid)
{
  char text[HNROOT_UUID_TEXT_LEN];
  hnroot_result r;

  r = hnroot_uuid_format (uuid, (grub_uint8_t *) text, sizeof (text));
  if (r != HNROOT_RESULT_OK)
    return grub_error (GRUB_ERR_BUG, N_("hnroot_uuid_format: %s"), result_text (r));
  return set_var (prefix, name, text);
}

/* The PARTUUID of DEVICE through GRUB's `probe --part-uuid'.  Interim, like probe_fs: to be
   the core's partition-table prober (hnroot_pt_probe_*).  */
static char *
part_uuid (const char *device)
{
  char *arg_device;
  char *args[4];
  const char *value;
  char *result = NULL;

  arg_device = grub_xasprintf ("(%s)", device);
  if (! arg_device)
    return NULL;
  args[0] = (char *) "--set";
  args[1] = (char *) "hnroot_partuuid_probe";
  args[2] = (char *) "--part-uuid";
  args[3] = arg_device;
  if (run_command ("probe", 4, args) == GRUB_ERR_NONE)
    {
      value = grub_env_get ("hnroot_partuuid_probe");
      if (value && *value)
	result = grub_strdup (value);
      else
	grub_error (GRUB_ERR_BAD_DEVICE, N_("(%s) has no partition UUID"), device);
      grub_env_unset ("hnroot_partuuid_probe");
    }
  grub_free (arg_device);
  return result;
}

/* select (WRITE != 0) and status (WRITE == 0).  */
static grub_err_t
hnroot_run (struct grub_arg_list *state, int write)
{
  const char *prefix = state[HNROOT_SET_PREFIX].set ? state[HNROOT_SET_PREFIX].arg : "hnroot_";
  char *hostpart = NULL, *esp = NULL, *partuuid = NULL;
  char *path = NULL, *state_path = NULL, *fallback_names = NULL;
  char message[HNROOT_MESSAGE_LEN], description[HNROOT_MESSAGE_LEN];
  struct hnroot_observation obs;
  struct hnroot_decision decision;
  struct blocklist list;
  grub_uint8_t *block = NULL, *old = NULL;
  grub_size_t block_len = 0;
  grub_file_t state_file = NULL;
  grub_file_t marker;
  grub_uint64_t started = grub_get_time_ms ();
  hnroot_result r;
  unsigned i;

  grub_memset (&obs, 0, sizeof (obs));
  grub_memset (&decision, 0, sizeof (decision));
  grub_memset (&list, 0, sizeof (list));

  if (state[HNROOT_TRIES].set)
    {
      unsigned long tries = grub_strtoul (state[HNROOT_TRIES].arg, NULL, 10);

      if (grub_errno || tries < 1 || tries > 100)
	{
	  grub_error (GRUB_ERR_BAD_ARGUMENT, N_("--tries must be 1 to 100, not `%s'"),
		      state[HNROOT_TRIES].arg);
	  goto done;
	}
      obs.tries = (grub_uint8_t) tries;
    }

  hostpart = device_name (state[HNROOT_HOSTPART].set ? state[HNROOT_HOSTPART].arg : NULL,
			  HNROOT_HOSTPART_LABEL);
  if (! hostpart)
    goto done;
  esp = device_name (state[HNROOT_ESP].set ? state[HNROOT_ESP].arg : NULL, HNROOT_ESP_LABEL);
  if (! esp)
    goto done;

  for (i = 0; i < HNROOT_IMAGE_COUNT; i++)
    {
      path = grub_xasprintf ("(%s)/%s", hostpart, (const char *) hnroot_image_file_name (i));
      if (! path || observe_image (path, &obs.images[i]) != GRUB_ERR_NONE)
	goto done;
      grub_free (path);
      path = NULL;
    }

  path = grub_xasprintf ("(%s)" HNROOT_REVERT_MARKER, hostpart);
  if (! path)
    goto done;
  marker = grub_file_open (path, GRUB_FILE_TYPE_GET_SIZE | GRUB_FILE_TYPE_NO_DECOMPRESS);
  if (marker)
    {
      obs.revert_requested = 1;
      grub_file_close (marker);
    }
  else if (grub_errno == GRUB_ERR_FILE_NOT_FOUND)
    grub_errno = GRUB_ERR_NONE;
  else
    goto done;

  state_path = grub_xasprintf ("(%s)" HNROOT_STATE_PATH, esp);
  if (! state_path
      || read_state (state_path, &block, &block_len, &list, &state_file) != GRUB_ERR_NONE)
    goto done;

  r = hnroot_decide (&obs, block, block_len, &decision, (grub_uint8_t *) message,
		     sizeof (message));
  if (r != HNROOT_RESULT_OK)
    {
      grub_error (GRUB_ERR_BUG, N_("hnroot_decide: %s"), result_text (r));
      goto done;
    }
  grub_printf ("hnroot: %s\n", message);

  if (! write)
    {
      r = hnroot_bootstate_describe (block, block_len, (grub_uint8_t *) description,
				     sizeof (description));
      if (r != HNROOT_RESULT_OK)
	{
	  grub_error (GRUB_ERR_BUG, N_("hnroot_bootstate_describe: %s"), result_text (r));
	  goto done;
	}
      grub_printf ("hnroot: boot state %s: %s\n", state_path, description);
      grub_printf ("hnroot: hostpart (%s), ESP (%s); module built for Debian grub2 %s\n",
		   hostpart, esp, HNROOT_GRUB_VERSION);
      if (decision.write.kind != HNROOT_STATE_NONE)
	grub_printf ("hnroot: select would record a new boot state (status writes nothing)\n");
    }
  else if (decision.write.kind != HNROOT_STATE_NONE)
    {
      grub_uint32_t offset = 0, len = 0;

      if (! block)
	grub_printf ("hnroot: not recording this boot: %s does not exist (it must be "
		     "preallocated, %d bytes, when hnroot is installed); trial counting is off\n",
		     state_path, HNROOT_BOOTSTATE_LEN);
      else
	{
	  old = grub_malloc (block_len);
	  if (! old)
	    goto done;
	  grub_memcpy (old, block, block_len);
	  r = hnroot_bootstate_encode (block, block_len, &decision.write, &offset, &len);
	  if (r != HNROOT_RESULT_OK)
	    grub_printf ("hnroot: not recording this boot in %s: %s\n", state_path,
			 result_text (r));
	  else if (write_state (state_file, &list, old, block, block_len, offset, len)
		   != GRUB_ERR_NONE)
	    {
	      /* Deliberately handled: GRUB cannot write here, the boot goes on.  */
	      grub_printf ("hnroot: cannot record this boot in %s: %s; booting %s without "
			   "counting this try\n", state_path, grub_errmsg,
			   (const char *) hnroot_image_file_name (decision.image));
	      grub_errno = GRUB_ERR_NONE;
	    }
	}
    }

  if (set_var (prefix, "reason", reason_codes[decision.reason < ARRAY_SIZE (reason_codes)
					       ? decision.reason : 0])
      || set_var (prefix, "message", message)
      || set_var (prefix, "hostpart", hostpart)
      || set_var (prefix, "esp", esp))
    goto done;
  partuuid = part_uuid (hostpart);
  if (partuuid)
    set_var (prefix, "partuuid", partuuid);
  else
    {
      /* Deliberately handled: without PARTUUID the initramfs can still find hostpart by
	 label, so the boot goes on.  */
      grub_printf ("hnroot: no PARTUUID for (%s): %s\n", hostpart, grub_errmsg);
      grub_errno = GRUB_ERR_NONE;
      set_var (prefix, "partuuid", "");
    }

  if (decision.reason == HNROOT_REASON_NOTHING_BOOTABLE)
    {
      set_var (prefix, "image", "");
      set_var (prefix, "uuid", "");
      set_var (prefix, "fallback_image", "");
      set_var (prefix, "fallback_uuid", "");
      set_var (prefix, "fallbacks", "");
      grub_error (GRUB_ERR_FILE_NOT_FOUND, N_("no bootable image on (%s)"), hostpart);
      goto done;
    }
  if (set_var (prefix, "image", (const char *) hnroot_image_file_name (decision.image))
      || set_uuid_var (prefix, "uuid", &decision.uuid))
    goto done;
  fallback_names = grub_strdup ("");
  for (i = 0; fallback_names && i < decision.fallback_count && i < 4; i++)
    {
      char *more = grub_xasprintf ("%s%s%s", fallback_names, i ? " " : "",
				   (const char *) hnroot_image_file_name (decision.fallbacks[i]));
      grub_free (fallback_names);
      fallback_names = more;
    }
  if (! fallback_names || set_var (prefix, "fallbacks", fallback_names))
    goto done;
  if (decision.fallback_count > 0)
    {
      if (set_var (prefix, "fallback_image",
		   (const char *) hnroot_image_file_name (decision.fallbacks[0]))
	  || set_uuid_var (prefix, "fallback_uuid", &decision.fallback_uuids[0]))
	goto done;
    }
  else if (set_var (prefix, "fallback_image", "") || set_var (prefix, "fallback_uuid", ""))
    goto done;

  grub_dprintf ("hnroot", "decided in %llu ms\n",
		(unsigned long long) (grub_get_time_ms () - started));

 done:
  if (state_file)
    grub_file_close (state_file);
  grub_free (old);
  grub_free (block);
  grub_free (fallback_names);
  grub_free (partuuid);
  grub_free (state_path);
  grub_free (path);
  grub_free (esp);
  grub_free (hostpart);
  return grub_errno;
}

static grub_err_t
grub_cmd_hnroot (grub_extcmd_context_t ctxt, int argc, char **args)
{
  if (argc == 1 && grub_strcmp (args[0], "select") == 0)
    return hnroot_run (ctxt->state, 1);
  if (argc == 1 && grub_strcmp (args[0], "status") == 0)
    return hnroot_run (ctxt->state, 0);
  return grub_error (GRUB_ERR_BAD_ARGUMENT,
		     N_("usage: hnroot select|status [--hostpart DEV] [--esp DEV] [--tries N] "
			"[--set-prefix P]"));
}

static grub_extcmd_t cmd;

GRUB_MOD_INIT(hnroot)
{
  cmd = grub_register_extcmd ("hnroot", grub_cmd_hnroot, 0,
			      N_("select|status [--hostpart DEV] [--esp DEV] [--tries N] "
				 "[--set-prefix P]"),
			      N_("Choose the hnroot image to boot and record trial boots."),
			      options);
}

GRUB_MOD_FINI(hnroot)
{
  grub_unregister_extcmd (cmd);
}
