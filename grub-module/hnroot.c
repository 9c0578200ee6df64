/* hnroot.c - choose the root image to boot before the kernel loads.  */
/*
 *  hnroot's GRUB module: finds hostpart and the ESP, observes hostpart (which hn-root*.img
 *  files exist, whether each is a filesystem that boots and with which UUID, whether
 *  system-revert exists) and the boot-state block on the ESP, asks hnroot-core (through
 *  hnroot-ffi) what to boot, writes the boot state the core returns in place (as save_env
 *  does), and hands the choice to grub.cfg through environment variables.  It makes no
 *  decision of its own, and identifies filesystems and partitions only with the core's
 *  probers (the ones the initramfs and `hnroot probe' use, after libblkid), reading through
 *  grub_disk_read, so that GRUB, the initramfs and blkid agree on what is `hostpart'.
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

#define HNROOT_STATE_PATH	"/hnroot/bootstate"
#define HNROOT_REVERT_MARKER	"/system-revert"
#define HNROOT_KERNEL_PATH	"/boot/kernel"
#define HNROOT_HOSTPART_LABEL	"hostpart"
#define HNROOT_ESP_LABEL	"EFI-BOOT"
#define HNROOT_LOOP_NAME	"hnroot_probe"
#define HNROOT_MESSAGE_LEN	1024
#define HNROOT_UUID_TEXT_LEN	40
/* Bounds: devices examined when searching by label, devices named in an error, entries of a
   partition table looked at, block-list pieces of the state file.  */
#define HNROOT_MAX_DEVICES	128
#define HNROOT_MAX_CANDIDATES	8
#define HNROOT_MAX_PARTITIONS	1024
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

/* The core's probers and what they hand back, allocated once per command: the prober
   storage is about 1 KiB and the read buffer HNROOT_PROBE_MAX_READ bytes, too much for
   GRUB's stack.  */
struct probe_ctx
{
  struct hnroot_fs_probe *fs;
  struct hnroot_pt_probe *pt;
  struct hnroot_fs_info *info;
  struct hnroot_partition *part;
  grub_uint8_t *buf;
};

enum prober
  {
    PROBER_FS,
    PROBER_PT,
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
    case HNROOT_RESULT_NEED_READ: return "the prober needs a read";
    case HNROOT_RESULT_DONE: return "done";
    case HNROOT_RESULT_PROBE_STATE: return "prober not initialised or not waiting for data";
    case HNROOT_RESULT_BOOTSTATE_SEQUENCE: return "boot-state sequence exhausted";
    default: return "unexpected result";
    }
}

/* An hnroot-ffi call returned R where it cannot fail when called right.  */
static grub_err_t
ffi_error (const char *function, hnroot_result r)
{
  return grub_error (GRUB_ERR_BUG, N_("%s: %s (a bug in hnroot)"), function, result_text (r));
}

static grub_err_t
probe_ctx_alloc (struct probe_ctx *ctx)
{
  ctx->fs = grub_malloc (sizeof (*ctx->fs));
  ctx->pt = grub_malloc (sizeof (*ctx->pt));
  ctx->info = grub_malloc (sizeof (*ctx->info));
  ctx->part = grub_malloc (sizeof (*ctx->part));
  ctx->buf = grub_malloc (HNROOT_PROBE_MAX_READ);
  if (! ctx->fs || ! ctx->pt || ! ctx->info || ! ctx->part || ! ctx->buf)
    return grub_errno;
  /* Not initialised until hnroot_*_probe_init: the magic says so to the library.  */
  grub_memset (ctx->fs, 0, sizeof (*ctx->fs));
  grub_memset (ctx->pt, 0, sizeof (*ctx->pt));
  return GRUB_ERR_NONE;
}

static void
probe_ctx_free (struct probe_ctx *ctx)
{
  grub_free (ctx->fs);
  grub_free (ctx->pt);
  grub_free (ctx->info);
  grub_free (ctx->part);
  grub_free (ctx->buf);
}

/* The size of DISK (a whole disk, a partition or a loopback file) in bytes.  */
static grub_err_t
disk_size (grub_disk_t disk, grub_uint64_t *size)
{
  grub_uint64_t sectors = grub_disk_native_sectors (disk);

  if (sectors == GRUB_DISK_SIZE_UNKNOWN
      || sectors > (GRUB_DISK_SIZE_UNKNOWN >> GRUB_DISK_SECTOR_BITS))
    return grub_error (GRUB_ERR_BAD_DEVICE, N_("the size of `%s' is unknown"), disk->name);
  *size = sectors << GRUB_DISK_SECTOR_BITS;
  return GRUB_ERR_NONE;
}

/* LEN bytes at byte OFFSET of DISK (relative to its partition, if it is one).  */
static grub_err_t
read_bytes (grub_disk_t disk, grub_uint64_t offset, grub_size_t len, void *buf)
{
  return grub_disk_read (disk, offset >> GRUB_DISK_SECTOR_BITS,
			 offset & (GRUB_DISK_SECTOR_SIZE - 1), len, buf);
}

/* Read LEN bytes at OFFSET of a loopback DISK sector by sector, reading as zeros each sector
   that GRUB's filesystem driver refuses with GRUB_ERR_BAD_FS.  Why: GRUB 2.06's ext2 driver
   cannot read a hole at the start of a file ("something wrong with extent", "invalid
   extent"), and an image copied sparsely has one wherever its first blocks are zeros (an
   ext4 image's first KiB on a 1 KiB-block hostpart, a btrfs image's first 64 KiB anywhere).
   GRUB itself never reads there, so the image boots; the prober must see those bytes as the
   zeros they are.  Any other error still fails the read.  Bounded: LEN / 512 sectors.  */
static grub_err_t
read_holes_as_zeros (grub_disk_t disk, grub_uint64_t offset, grub_size_t len,
		     grub_uint8_t *buf)
{
  grub_size_t done = 0, piece;
  unsigned zeroed = 0;

  while (done < len)
    {
      piece = GRUB_DISK_SECTOR_SIZE - ((offset + done) & (GRUB_DISK_SECTOR_SIZE - 1));
      if (piece > len - done)
	piece = len - done;
      if (read_bytes (disk, offset + done, piece, buf + done) != GRUB_ERR_NONE)
	{
	  if (grub_errno != GRUB_ERR_BAD_FS)
	    return grub_errno;
	  grub_errno = GRUB_ERR_NONE;
	  grub_memset (buf + done, 0, piece);
	  zeroed++;
	}
      done += piece;
    }
  grub_dprintf ("hnroot", "%u sectors of `%s' from byte %llu read as zeros (holes GRUB's "
		"driver cannot read)\n", zeroed, disk->name, (unsigned long long) offset);
  return GRUB_ERR_NONE;
}

/* The one step/feed loop: drive the core's prober KIND (initialised in CTX) to its answer,
   doing each read it asks for on DISK (SIZE bytes) through grub_disk_read.  Bounded by the
   prober's own most reads.  A read GRUB cannot do ends the probe with GRUB's error: a
   device that cannot be read is not identified (but see read_holes_as_zeros for a loopback
   file).  */
static grub_err_t
run_prober (grub_disk_t disk, grub_uint64_t size, struct probe_ctx *ctx, enum prober kind)
{
  const char *name = kind == PROBER_FS ? "filesystem" : "partition-table";
  grub_uint32_t max = kind == PROBER_FS ? HNROOT_FS_PROBE_MAX_READS : HNROOT_PT_PROBE_MAX_READS;
  grub_uint32_t reads, len;
  grub_uint64_t offset;
  grub_size_t got;
  hnroot_result r;

  for (reads = 0; reads <= max; reads++)
    {
      r = kind == PROBER_FS ? hnroot_fs_probe_step (ctx->fs, &offset, &len)
	: hnroot_pt_probe_step (ctx->pt, &offset, &len);
      if (r == HNROOT_RESULT_DONE)
	return GRUB_ERR_NONE;
      if (r != HNROOT_RESULT_NEED_READ)
	return ffi_error (kind == PROBER_FS ? "hnroot_fs_probe_step" : "hnroot_pt_probe_step", r);
      if (reads == max)
	break;
      if (len > HNROOT_PROBE_MAX_READ)
	return grub_error (GRUB_ERR_BUG, N_("the %s prober asked for %u bytes, more than %u"),
			   name, len, (unsigned) HNROOT_PROBE_MAX_READ);
      /* Never past the end: fewer bytes tell the prober that the device ended.  */
      got = offset >= size ? 0 : (size - offset < len ? (grub_size_t) (size - offset) : len);
      if (got > 0 && read_bytes (disk, offset, got, ctx->buf) != GRUB_ERR_NONE)
	{
	  if (grub_errno != GRUB_ERR_BAD_FS || disk->dev->id != GRUB_DISK_DEVICE_LOOPBACK_ID)
	    return grub_errno;
	  grub_errno = GRUB_ERR_NONE;
	  if (read_holes_as_zeros (disk, offset, got, ctx->buf) != GRUB_ERR_NONE)
	    return grub_errno;
	}
      r = kind == PROBER_FS ? hnroot_fs_probe_feed (ctx->fs, ctx->buf, got)
	: hnroot_pt_probe_feed (ctx->pt, ctx->buf, got);
      if (r != HNROOT_RESULT_OK)
	return ffi_error (kind == PROBER_FS ? "hnroot_fs_probe_feed" : "hnroot_pt_probe_feed", r);
    }
  return grub_error (GRUB_ERR_BUG, N_("the %s prober asked for more than %u reads of `%s'"),
		     name, max, disk->name);
}

/* The one place that identifies the filesystem on DISK: the core's prober, whose answer is
   left in CTX->info.  Fails with grub_errno set when DISK cannot be read; the caller decides
   whether that is expected.  */
static grub_err_t
probe_fs (grub_disk_t disk, struct probe_ctx *ctx)
{
  grub_uint64_t size = 0;
  hnroot_result r;

  if (disk_size (disk, &size) != GRUB_ERR_NONE)
    return grub_errno;
  r = hnroot_fs_probe_init (ctx->fs, size);
  if (r != HNROOT_RESULT_OK)
    return ffi_error ("hnroot_fs_probe_init", r);
  if (run_prober (disk, size, ctx, PROBER_FS) != GRUB_ERR_NONE)
    return grub_errno;
  r = hnroot_fs_probe_result (ctx->fs, ctx->info);
  if (r != HNROOT_RESULT_OK)
    return ffi_error ("hnroot_fs_probe_result", r);
  return GRUB_ERR_NONE;
}

/* Whether the probe found one filesystem labelled LABEL (blkid's LABEL=, byte for byte).  */
static int
label_is (const struct hnroot_fs_info *info, const char *label)
{
  grub_size_t len = grub_strlen (label);

  return info->outcome == HNROOT_FS_FOUND && info->has_label && info->label_len == len
    && grub_memcmp (info->label, label, len) == 0;
}

/* What the probe found, in a few words, for messages.  */
static const char *
outcome_text (const struct hnroot_fs_info *info)
{
  switch (info->outcome)
    {
    case HNROOT_FS_UNKNOWN: return "no filesystem hnroot recognises";
    case HNROOT_FS_AMBIVALENT: return "more than one filesystem signature (ambivalent)";
    case HNROOT_FS_OTHER: return "a RAID, LVM or encrypted volume member";
    default: return "a filesystem";
    }
}

/* GRUB's module for filesystem type FS_TYPE, or NULL when GRUB cannot boot from it.  */
static const char *
driver_module (grub_uint8_t fs_type)
{
  switch (fs_type)
    {
    case HNROOT_FS_TYPE_VFAT: return "fat";
    case HNROOT_FS_TYPE_EXT2:
    case HNROOT_FS_TYPE_EXT3:
    case HNROOT_FS_TYPE_EXT4:
    case HNROOT_FS_TYPE_EXT4DEV: return "ext2";
    case HNROOT_FS_TYPE_XFS: return "xfs";
    case HNROOT_FS_TYPE_BTRFS: return "btrfs";
    default: return NULL;
    }
}

struct label_search
{
  const char *label;
  struct probe_ctx *probe;
  char *found[HNROOT_MAX_CANDIDATES];
  unsigned count;
  unsigned matches;
  unsigned examined;
  int truncated;
  grub_err_t failed;
  char *seen_list;
};

/* Append "NAME WHAT DETAIL" to the list of what was seen, for the error message (best
   effort: a list that cannot grow is cut short).  */
static void
note_seen (struct label_search *ctx, const char *name, const char *what, const char *detail)
{
  char *more;

  more = grub_xasprintf ("%s%s%s %s%s%s", ctx->seen_list ? ctx->seen_list : "",
			 ctx->seen_list ? ", " : "", name, what, detail ? " " : "",
			 detail ? detail : "");
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
  const struct hnroot_fs_info *info = ctx->probe->info;
  grub_disk_t disk;

  if (ctx->examined >= HNROOT_MAX_DEVICES)
    {
      ctx->truncated = 1;
      return 1;
    }
  disk = grub_disk_open (name);
  if (! disk)
    {
      /* Expected for drives without a medium: named, not ours.  */
      ctx->examined++;
      note_seen (ctx, name, "cannot be opened", NULL);
      grub_errno = GRUB_ERR_NONE;
      return 0;
    }
  /* Only devices the kernel will also see: not GRUB's loopback files nor its memdisk.  */
  if (disk->dev->id == GRUB_DISK_DEVICE_LOOPBACK_ID
      || disk->dev->id == GRUB_DISK_DEVICE_MEMDISK_ID)
    {
      grub_disk_close (disk);
      return 0;
    }
  ctx->examined++;
  if (probe_fs (disk, ctx->probe) != GRUB_ERR_NONE)
    {
      /* Deliberately handled: a device that cannot be read is not ours; it is named.  */
      note_seen (ctx, name, "unreadable:", grub_errmsg);
      grub_errno = GRUB_ERR_NONE;
    }
  else if (info->outcome != HNROOT_FS_FOUND)
    note_seen (ctx, name, info->outcome == HNROOT_FS_UNKNOWN ? "(no filesystem)"
	       : info->outcome == HNROOT_FS_AMBIVALENT ? "(ambivalent)" : "(RAID/LVM/crypto)",
	       NULL);
  else
    {
      note_seen (ctx, name, (const char *) hnroot_fs_type_name (info->fs_type),
		 info->has_label ? (const char *) info->label : "(no label)");
      if (label_is (info, ctx->label))
	{
	  ctx->matches++;
	  if (ctx->count < HNROOT_MAX_CANDIDATES)
	    {
	      ctx->found[ctx->count] = grub_strdup (name);
	      if (! ctx->found[ctx->count])
		{
		  ctx->failed = grub_errno;
		  grub_disk_close (disk);
		  return 1;
		}
	      ctx->count++;
	    }
	}
    }
  grub_disk_close (disk);
  return 0;
}

/* The disk GRUB was started from, from $cmdpath ("(hd0,gpt1)/EFI/BOOT" gives "hd0"), as a
   malloc'd name; NULL when GRUB does not know it (no $cmdpath, a network boot).  */
static char *
boot_disk (void)
{
  const char *cmdpath = grub_env_get ("cmdpath");
  const char *end;

  if (! cmdpath || cmdpath[0] != '(')
    return NULL;
  for (end = cmdpath + 1; *end && *end != ',' && *end != ')'; end++)
    ;
  if (*end == '\0' || end == cmdpath + 1)
    return NULL;
  return grub_strndup (cmdpath + 1, end - (cmdpath + 1));
}

/* Whether GRUB device NAME ("hd0,gpt2", or "hd0" for a whole disk) lies on disk DISK.  */
static int
on_disk (const char *name, const char *disk)
{
  grub_size_t len = grub_strlen (disk);

  return grub_strncmp (name, disk, len) == 0 && (name[len] == ',' || name[len] == '\0');
}

/* The one device whose filesystem is labelled LABEL, as a malloc'd GRUB device name, found
   with the core's prober on every disk and partition GRUB sees.  When several are, the one
   on the disk GRUB was started from (the disk of the ESP that holds this GRUB, as
   systemd-gpt-auto-generator keeps to the boot loader's disk) if exactly one is there, said
   on the console; otherwise an error naming them all.  OPTION names the option that would
   make the search unnecessary.  */
static char *
find_by_label (const char *label, const char *option, struct probe_ctx *probe)
{
  struct label_search ctx;
  char *result = NULL, *names = NULL, *more, *disk = NULL;
  unsigned i, on_boot_disk = 0, pick = 0;

  grub_memset (&ctx, 0, sizeof (ctx));
  ctx.label = label;
  ctx.probe = probe;
  grub_device_iterate (label_search_hook, &ctx);
  if (ctx.failed)
    goto done;
  /* Whatever a device left behind was handled in the hook.  */
  grub_errno = GRUB_ERR_NONE;
  if (ctx.truncated)
    grub_error (GRUB_ERR_BAD_DEVICE,
		N_("looked for the filesystem labelled `%s' on the first %u devices and stopped "
		   "(more are attached); pass %s DEVICE"), label, ctx.examined, option);
  else if (ctx.matches == 1)
    {
      result = ctx.found[0];
      ctx.found[0] = NULL;
    }
  else if (ctx.matches == 0)
    grub_error (GRUB_ERR_UNKNOWN_DEVICE,
		N_("no filesystem labelled `%s' among %u devices (%s); label it `%s' or pass "
		   "%s DEVICE"),
		label, ctx.examined, ctx.seen_list ? ctx.seen_list : "none", label, option);
  else
    {
      for (i = 0; i < ctx.count; i++)
	{
	  more = grub_xasprintf ("%s%s(%s)", names ? names : "", names ? ", " : "",
				 ctx.found[i]);
	  grub_free (names);
	  names = more;
	  if (! names)
	    goto done;
	}
      if (ctx.matches > ctx.count)
	{
	  more = grub_xasprintf ("%s, ...", names);
	  grub_free (names);
	  names = more;
	  if (! names)
	    goto done;
	}
      disk = boot_disk ();
      grub_errno = GRUB_ERR_NONE;
      for (i = 0; disk && i < ctx.count; i++)
	if (on_disk (ctx.found[i], disk))
	  {
	    on_boot_disk++;
	    pick = i;
	  }
      if (on_boot_disk == 1 && ctx.matches == ctx.count)
	{
	  grub_printf ("hnroot: %u filesystems are labelled `%s' (%s): using (%s), the one on "
		       "the disk GRUB started from (%s); relabel the others or pass %s DEVICE\n",
		       ctx.matches, label, names, ctx.found[pick], disk, option);
	  result = ctx.found[pick];
	  ctx.found[pick] = NULL;
	}
      else if (! disk)
	grub_error (GRUB_ERR_BAD_DEVICE,
		    N_("%u filesystems are labelled `%s' (%s) and GRUB does not know the disk it "
		       "started from: refusing to guess; relabel all but one or pass %s DEVICE"),
		    ctx.matches, label, names, option);
      else
	grub_error (GRUB_ERR_BAD_DEVICE,
		    N_("%u filesystems are labelled `%s' (%s), %s on the disk GRUB started from "
		       "(%s): refusing to guess; relabel all but one or pass %s DEVICE"),
		    ctx.matches, label, names,
		    on_boot_disk == 0 ? "none" : on_boot_disk > 1 ? "more than one"
		    : "one (but not every candidate could be kept)", disk, option);
    }

 done:
  for (i = 0; i < ctx.count; i++)
    grub_free (ctx.found[i]);
  grub_free (names);
  grub_free (disk);
  grub_free (ctx.seen_list);
  return result;
}

/* A device given as "(hd0,gpt2)" or "hd0,gpt2", or found by LABEL, as a malloc'd name.  */
static char *
device_name (const char *given, const char *label, const char *option,
	     struct probe_ctx *probe)
{
  grub_size_t len;

  if (! given)
    return find_by_label (label, option, probe);
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

/* The PARTUUID (blkid's form) of partition DEVICE, from the core's partition-table prober on
   the disk that holds it: the table entry that starts where GRUB's partition starts.  A
   malloc'd string, or NULL with grub_errno set.  */
static char *
part_uuid (const char *device, struct probe_ctx *ctx)
{
  grub_disk_t disk = NULL, whole = NULL;
  grub_uint8_t *entries = NULL;
  grub_size_t entries_len = 0;
  struct hnroot_pt_info table;
  grub_uint64_t start, size = 0;
  char *result = NULL;
  grub_uint32_t i;
  hnroot_result r;

  disk = grub_disk_open (device);
  if (! disk)
    goto done;
  if (! disk->partition)
    {
      grub_error (GRUB_ERR_BAD_DEVICE, N_("(%s) is a whole disk, not a partition"), device);
      goto done;
    }
  start = grub_partition_get_start (disk->partition) << GRUB_DISK_SECTOR_BITS;
  whole = grub_disk_open (disk->name);
  if (! whole || disk_size (whole, &size) != GRUB_ERR_NONE)
    goto done;
  r = hnroot_pt_probe_init (ctx->pt, size, 1U << whole->log_sector_size);
  if (r != HNROOT_RESULT_OK)
    {
      ffi_error ("hnroot_pt_probe_init", r);
      goto done;
    }
  if (run_prober (whole, size, ctx, PROBER_PT) != GRUB_ERR_NONE)
    goto done;
  r = hnroot_pt_probe_result (ctx->pt, &table);
  if (r != HNROOT_RESULT_OK)
    {
      ffi_error ("hnroot_pt_probe_result", r);
      goto done;
    }
  if (table.kind == HNROOT_PT_GPT)
    {
      entries_len = table.entries_len;
      if (entries_len == 0 || table.entries_offset > size
	  || entries_len > size - table.entries_offset)
	{
	  grub_error (GRUB_ERR_BAD_PART_TABLE,
		      N_("(%s)'s GPT entry array (%" PRIuGRUB_SIZE " bytes at byte %llu) is "
			 "not inside the disk"), disk->name, entries_len,
		      (unsigned long long) table.entries_offset);
	  goto done;
	}
      entries = grub_malloc (entries_len);
      if (! entries || read_bytes (whole, table.entries_offset, entries_len, entries))
	goto done;
    }
  else if (table.kind != HNROOT_PT_MBR)
    {
      grub_error (GRUB_ERR_BAD_PART_TABLE,
		  N_("hnroot finds no GPT or MBR on (%s), which holds (%s)"), disk->name, device);
      goto done;
    }
  for (i = 0; i < HNROOT_MAX_PARTITIONS; i++)
    {
      r = hnroot_pt_partition (ctx->pt, entries, entries_len, i, ctx->part);
      if (r == HNROOT_RESULT_DONE)
	break;
      if (r == HNROOT_RESULT_INVALID_ARGUMENT)
	{
	  grub_error (GRUB_ERR_BAD_PART_TABLE,
		      N_("(%s)'s GPT entry array does not match its CRC"), disk->name);
	  goto done;
	}
      if (r != HNROOT_RESULT_OK)
	{
	  ffi_error ("hnroot_pt_partition", r);
	  goto done;
	}
      if (ctx->part->start != start)
	continue;
      if (ctx->part->partuuid[0] == '\0')
	grub_error (GRUB_ERR_BAD_PART_TABLE, N_("partition %u of (%s) has no PARTUUID"),
		    ctx->part->number, disk->name);
      else
	result = grub_strdup ((const char *) ctx->part->partuuid);
      goto done;
    }
  grub_error (GRUB_ERR_BAD_PART_TABLE,
	      N_("no partition in (%s)'s %s starts at byte %llu, where (%s) starts (hnroot "
		 "reads GPT and primary MBR partitions)"), disk->name,
	      table.kind == HNROOT_PT_GPT ? "GPT" : "MBR", (unsigned long long) start, device);

 done:
  grub_free (entries);
  if (whole)
    grub_disk_close (whole);
  if (disk)
    grub_disk_close (disk);
  return result;
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

/* Say why image PATH is not bootable.  Handled on purpose: an image that cannot be read is
   an observation for the core, not an error, so grub_errno is cleared.  */
static void
report_unreadable (const char *path, const char *fmt, ...)
{
  va_list args;

  grub_printf ("hnroot: %s is unreadable: ", path);
  va_start (args, fmt);
  grub_vprintf (fmt, args);
  va_end (args);
  grub_printf ("\n");
  grub_errno = GRUB_ERR_NONE;
}

/* How image file PATH looks: absent, unreadable, or readable with a UUID.  Readable means
   what the menu entry needs: GRUB opens the file as a loopback disk, the core's prober finds
   one filesystem with a UUID in it (the identity the initramfs checks against hnroot.uuid=),
   and GRUB's driver for that type opens /boot/kernel in it.  GRUB's own filesystem probing
   (and its autoloading of every filesystem module) is never run on a file the core does not
   recognise.  */
static grub_err_t
observe_image (const char *path, struct probe_ctx *ctx, struct hnroot_image_seen *out)
{
  char *add_args[] = { (char *) HNROOT_LOOP_NAME, (char *) path };
  char *del_args[] = { (char *) "-d", (char *) HNROOT_LOOP_NAME };
  const struct hnroot_fs_info *info = ctx->info;
  grub_fs_autoload_hook_t autoload;
  grub_disk_t disk = NULL;
  grub_file_t kernel = NULL;
  const char *type, *module;

  grub_memset (out, 0, sizeof (*out));
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
      out->kind = HNROOT_IMAGE_UNREADABLE;
      report_unreadable (path, "GRUB cannot open it as a loopback disk: %s", grub_errmsg);
      return GRUB_ERR_NONE;
    }
  out->kind = HNROOT_IMAGE_UNREADABLE;
  disk = grub_disk_open (HNROOT_LOOP_NAME);
  if (! disk)
    {
      report_unreadable (path, "GRUB cannot open its loopback disk: %s", grub_errmsg);
      goto done;
    }
  if (probe_fs (disk, ctx) != GRUB_ERR_NONE)
    {
      if (grub_errno == GRUB_ERR_BUG)
	goto done;
      report_unreadable (path, "reading it failed: %s", grub_errmsg);
      goto done;
    }
  if (info->outcome != HNROOT_FS_FOUND)
    {
      report_unreadable (path, "%s in it", outcome_text (info));
      goto done;
    }
  type = (const char *) hnroot_fs_type_name (info->fs_type);
  module = driver_module (info->fs_type);
  if (info->missing_bytes)
    {
      /* blkid still reports such a file, and GRUB might even read its kernel; the kernel
	 would refuse to mount it.  */
      report_unreadable (path, "it is truncated: its %s filesystem spans %llu bytes, the file "
			 "lacks the last %llu (an incomplete copy?)", type,
			 (unsigned long long) info->fs_size,
			 (unsigned long long) info->missing_bytes);
      goto done;
    }
  if (info->uuid.kind == HNROOT_UUID_NONE)
    {
      report_unreadable (path, "its %s filesystem has no UUID for hnroot.uuid=", type);
      goto done;
    }
  if (! module)
    {
      report_unreadable (path, "it holds %s, which GRUB cannot boot from", type);
      goto done;
    }
  /* The one driver this filesystem needs, and no autoloading of the others.  */
  if (! grub_dl_load (module))
    {
      report_unreadable (path, "GRUB cannot load its `%s' module for this %s filesystem: %s",
			 module, type, grub_errno ? grub_errmsg : "module loading is off");
      goto done;
    }
  autoload = grub_fs_autoload_hook;
  grub_fs_autoload_hook = NULL;
  kernel = grub_file_open ("(" HNROOT_LOOP_NAME ")" HNROOT_KERNEL_PATH,
			   GRUB_FILE_TYPE_GET_SIZE | GRUB_FILE_TYPE_NO_DECOMPRESS);
  grub_fs_autoload_hook = autoload;
  if (! kernel)
    report_unreadable (path, "GRUB's %s driver cannot open " HNROOT_KERNEL_PATH " in this %s "
		       "filesystem: %s", module, type, grub_errmsg);
  else if (! kernel->fs || grub_strcmp (kernel->fs->name, module) != 0)
    report_unreadable (path, "GRUB reads it as %s, hnroot's prober as %s",
		       kernel->fs ? kernel->fs->name : "no filesystem", type);
  else
    {
      out->kind = HNROOT_IMAGE_READABLE;
      out->uuid = info->uuid;
    }

 done:
  if (kernel)
    grub_file_close (kernel);
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
    return ffi_error ("hnroot_uuid_format", r);
  return set_var (prefix, name, text);
}

/* The PARTUUID of DEVICE (ROLE: hostpart or the ESP) for the kernel command line, or "" with
   a line saying why (a filesystem on a whole disk or on an MBR logical partition has none).
   Handled on purpose: the initramfs then looks for LABEL instead, so the boot goes on.  NULL
   only when memory runs out or hnroot has a bug.  */
static char *
part_uuid_or_empty (const char *device, const char *role, const char *label,
		    struct probe_ctx *probe)
{
  char *uuid = part_uuid (device, probe);

  if (uuid)
    return uuid;
  if (grub_errno == GRUB_ERR_OUT_OF_MEMORY || grub_errno == GRUB_ERR_BUG)
    return NULL;
  grub_printf ("hnroot: no PARTUUID for %s (%s): %s; the kernel command line gets an empty "
	       "PARTUUID= and the initramfs looks for LABEL=%s instead\n",
	       role, device, grub_errmsg, label);
  grub_errno = GRUB_ERR_NONE;
  return grub_strdup ("");
}

/* select (WRITE != 0) and status (WRITE == 0).  */
static grub_err_t
hnroot_run (struct grub_arg_list *state, int write)
{
  const char *prefix = state[HNROOT_SET_PREFIX].set ? state[HNROOT_SET_PREFIX].arg : "hnroot_";
  char *hostpart = NULL, *esp = NULL, *partuuid = NULL, *esp_partuuid = NULL;
  char *path = NULL, *state_path = NULL, *fallback_names = NULL;
  char message[HNROOT_MESSAGE_LEN], description[HNROOT_MESSAGE_LEN];
  char tries_text[8];
  const char *reason;
  struct hnroot_observation obs;
  struct hnroot_decision decision;
  struct blocklist list;
  struct probe_ctx probe;
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
  grub_memset (&probe, 0, sizeof (probe));

  obs.tries = HNROOT_DEFAULT_TRIES;
  if (state[HNROOT_TRIES].set)
    {
      unsigned long tries = grub_strtoul (state[HNROOT_TRIES].arg, NULL, 10);

      if (grub_errno || tries < 1 || tries > HNROOT_MAX_TRIES)
	{
	  grub_error (GRUB_ERR_BAD_ARGUMENT, N_("--tries must be 1 to %d, not `%s'"),
		      HNROOT_MAX_TRIES, state[HNROOT_TRIES].arg);
	  goto done;
	}
      obs.tries = (grub_uint8_t) tries;
    }
  grub_snprintf (tries_text, sizeof (tries_text), "%u", (unsigned) obs.tries);

  if (probe_ctx_alloc (&probe) != GRUB_ERR_NONE)
    goto done;
  hostpart = device_name (state[HNROOT_HOSTPART].set ? state[HNROOT_HOSTPART].arg : NULL,
			  HNROOT_HOSTPART_LABEL, "--hostpart", &probe);
  if (! hostpart)
    goto done;
  esp = device_name (state[HNROOT_ESP].set ? state[HNROOT_ESP].arg : NULL, HNROOT_ESP_LABEL,
		     "--esp", &probe);
  if (! esp)
    goto done;

  for (i = 0; i < HNROOT_IMAGE_COUNT; i++)
    {
      path = grub_xasprintf ("(%s)/%s", hostpart, (const char *) hnroot_image_file_name (i));
      if (! path || observe_image (path, &probe, &obs.images[i]) != GRUB_ERR_NONE)
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
      ffi_error ("hnroot_decide", r);
      goto done;
    }
  grub_printf ("hnroot: %s\n", message);

  partuuid = part_uuid_or_empty (hostpart, "hostpart", HNROOT_HOSTPART_LABEL, &probe);
  if (! partuuid)
    goto done;
  esp_partuuid = part_uuid_or_empty (esp, "the ESP", HNROOT_ESP_LABEL, &probe);
  if (! esp_partuuid)
    goto done;

  if (! write)
    {
      r = hnroot_bootstate_describe (block, block_len, (grub_uint8_t *) description,
				     sizeof (description));
      if (r != HNROOT_RESULT_OK)
	{
	  ffi_error ("hnroot_bootstate_describe", r);
	  goto done;
	}
      grub_printf ("hnroot: boot state %s: %s\n", state_path, description);
      grub_printf ("hnroot: hostpart (%s) PARTUUID %s, ESP (%s) PARTUUID %s, %s tries; module "
		   "built for Debian grub2 %s\n", hostpart, *partuuid ? partuuid : "-", esp,
		   *esp_partuuid ? esp_partuuid : "-", tries_text, HNROOT_GRUB_VERSION);
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

  reason = (const char *) hnroot_reason_code (decision.reason);
  if (! reason)
    {
      grub_error (GRUB_ERR_BUG, N_("hnroot_reason_code: no name for reason %u"),
		  (unsigned) decision.reason);
      goto done;
    }
  if (set_var (prefix, "reason", reason)
      || set_var (prefix, "message", message)
      || set_var (prefix, "hostpart", hostpart)
      || set_var (prefix, "esp", esp)
      || set_var (prefix, "partuuid", partuuid)
      || set_var (prefix, "esp_partuuid", esp_partuuid)
      || set_var (prefix, "tries", tries_text))
    goto done;

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
  for (i = 0; fallback_names && i < decision.fallback_count
	 && i < ARRAY_SIZE (decision.fallbacks); i++)
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
  probe_ctx_free (&probe);
  grub_free (old);
  grub_free (block);
  grub_free (fallback_names);
  grub_free (esp_partuuid);
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
