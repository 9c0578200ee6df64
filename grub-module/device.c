/* device.c - find hostpart and the ESP, and their PARTUUIDs.  */
/*
 *  By label: every disk and partition GRUB lists (except its loopback files and memdisk,
 *  which the kernel never sees) is identified with the core's filesystem prober; the ones
 *  labelled as asked are the candidates, and the core chooses among them
 *  (hnroot_choose_device: the only one, else the one on the disk GRUB started from, else a
 *  refusal that names them all).  A PARTUUID comes from the core's partition-table prober on
 *  the disk that holds the partition.
 *
 *  SPDX-License-Identifier: GPL-3.0-or-later
 */

#include <grub/types.h>
#include <grub/mm.h>
#include <grub/misc.h>
#include <grub/err.h>
#include <grub/env.h>
#include <grub/disk.h>
#include <grub/partition.h>
#include <grub/i18n.h>

#include "hnroot-grub.h"

struct label_search
{
  const char *label;
  struct hnroot_probe_ctx *probe;
  /* The first HNROOT_MAX_CANDIDATES matches; MATCHES counts them all.  */
  char *found[HNROOT_MAX_CANDIDATES];
  unsigned count;
  unsigned matches;
  unsigned examined;
  int truncated;
  grub_err_t failed;
  /* Every device seen, with what it holds, for the message when none matches.  */
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

/* Whether the probe found one filesystem labelled LABEL: the core's rule (blkid's LABEL=,
   byte for byte), the one Linux uses.  */
static int
label_is (struct hnroot_probe_ctx *probe, const char *label)
{
  bool yes = false;

  if (hnroot_fs_labelled (probe->fs, (const grub_uint8_t *) label, grub_strlen (label), &yes)
      != HNROOT_RESULT_OK)
    return 0;
  return yes;
}

static int
label_search_hook (const char *name, void *data)
{
  struct label_search *ctx = data;
  const struct hnroot_fs_info *info = ctx->probe->info;
  grub_uint64_t size = 0;
  grub_disk_t disk;
  char label[4 * HNROOT_LABEL_MAX + 3];

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
  if (hnroot_grub_disk_size (disk, &size) != GRUB_ERR_NONE
      || hnroot_grub_probe_fs (disk, size, ctx->probe) != GRUB_ERR_NONE)
    {
      if (grub_errno == GRUB_ERR_BUG || grub_errno == GRUB_ERR_OUT_OF_MEMORY)
	{
	  ctx->failed = grub_errno;
	  grub_disk_close (disk);
	  return 1;
	}
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
      /* A label read from any disk is printed escaped: it cannot move the cursor or fake a
	 line.  */
      label[0] = '\'';
      if (hnroot_label_text (info, (grub_uint8_t *) label + 1, sizeof (label) - 2)
	  != HNROOT_RESULT_OK)
	grub_strcpy (label + 1, "?");
      grub_strcpy (label + grub_strlen (label), "'");
      note_seen (ctx, name, (const char *) hnroot_fs_type_name (info->fs_type),
		 info->has_label ? label : "(no label)");
      if (label_is (ctx->probe, ctx->label))
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
   malloc'd name; NULL when GRUB does not know it (no $cmdpath, a network boot).  Debian's
   GRUB 2.12 sets $fw_path instead of $cmdpath (its patch
   add-fw_path-variable-to-detect-config-file-on-efi), with the same value.  */
static char *
boot_disk (void)
{
  const char *cmdpath = grub_env_get ("cmdpath");
  const char *end;

  if (! cmdpath || ! *cmdpath)
    cmdpath = grub_env_get ("fw_path");
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

/* The device whose filesystem is labelled LABEL, as the core chooses it among all GRUB sees,
   as a malloc'd GRUB device name; NULL with an error naming every candidate (or every device
   seen, when none matches).  OPTION names the option that makes the search unnecessary.  */
static char *
find_by_label (const char *label, const char *option, struct hnroot_probe_ctx *probe)
{
  struct label_search ctx;
  struct hnroot_candidate candidates[HNROOT_MAX_CANDIDATES];
  struct hnroot_choice choice;
  char why[256];
  char *result = NULL, *names = NULL, *more, *disk = NULL;
  hnroot_result r;
  unsigned i;

  grub_memset (&ctx, 0, sizeof (ctx));
  grub_memset (candidates, 0, sizeof (candidates));
  ctx.label = label;
  ctx.probe = probe;
  grub_device_iterate (label_search_hook, &ctx);
  if (ctx.failed)
    goto done;
  /* Whatever a device left behind was handled in the hook.  */
  grub_errno = GRUB_ERR_NONE;
  if (ctx.truncated)
    {
      grub_error (GRUB_ERR_BAD_DEVICE,
		  N_("looked for the filesystem labelled `%s' on the first %u devices and "
		     "stopped (more are attached); pass %s DEVICE"), label, ctx.examined, option);
      goto done;
    }
  disk = boot_disk ();
  grub_errno = GRUB_ERR_NONE;
  for (i = 0; i < ctx.count; i++)
    {
      candidates[i].pinned = 0;
      candidates[i].on_boot_disk = disk && on_disk (ctx.found[i], disk);
      more = grub_xasprintf ("%s%s(%s)%s", names ? names : "", names ? ", " : "",
			     ctx.found[i], candidates[i].on_boot_disk ? " on the boot disk" : "");
      grub_free (names);
      names = more;
      if (! names)
	goto done;
    }
  r = hnroot_choose_device (candidates, ctx.count, ctx.matches, &choice,
			    (grub_uint8_t *) why, sizeof (why));
  if (r != HNROOT_RESULT_OK)
    {
      hnroot_grub_ffi_error ("hnroot_choose_device", r);
      goto done;
    }
  switch (choice.kind)
    {
    case HNROOT_CHOSEN_ONLY:
    case HNROOT_CHOSEN_PIN:
    case HNROOT_CHOSEN_BOOT_DISK:
      if (choice.index >= ctx.count)
	{
	  grub_error (GRUB_ERR_BUG, N_("hnroot_choose_device chose %u of %u"),
		      (unsigned) choice.index, ctx.count);
	  goto done;
	}
      if (choice.kind != HNROOT_CHOSEN_ONLY)
	grub_printf ("hnroot: %u filesystems are labelled `%s' (%s): using (%s), %s; relabel "
		     "the others or pass %s DEVICE\n", ctx.matches, label, names,
		     ctx.found[choice.index], why, option);
      result = ctx.found[choice.index];
      ctx.found[choice.index] = NULL;
      break;
    case HNROOT_CHOICE_NONE:
      grub_error (GRUB_ERR_UNKNOWN_DEVICE,
		  N_("no filesystem labelled `%s' among %u devices (%s); label it `%s' or pass "
		     "%s DEVICE"),
		  label, ctx.examined, ctx.seen_list ? ctx.seen_list : "none", label, option);
      break;
    default:
      grub_error (GRUB_ERR_BAD_DEVICE,
		  N_("filesystems labelled `%s': %s%s (GRUB started from %s): %s; pass %s DEVICE"),
		  label, names ? names : "", ctx.matches > ctx.count ? ", ..." : "",
		  disk ? disk : "an unknown disk", why, option);
      break;
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
char *
hnroot_grub_device (const char *given, const char *label, const char *option,
		    struct hnroot_probe_ctx *probe)
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
part_uuid (const char *device, struct hnroot_probe_ctx *ctx)
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
  if (! whole || hnroot_grub_disk_size (whole, &size) != GRUB_ERR_NONE
      || hnroot_grub_probe_pt (whole, size, ctx) != GRUB_ERR_NONE)
    goto done;
  r = hnroot_pt_probe_result (ctx->pt, &table);
  if (r != HNROOT_RESULT_OK)
    {
      hnroot_grub_ffi_error ("hnroot_pt_probe_result", r);
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
      if (! entries || hnroot_grub_read (whole, table.entries_offset, entries_len, entries))
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
      if (r != HNROOT_RESULT_OK)
	{
	  /* A damaged entry array is a fact about the disk, said as the library words it.  */
	  grub_error (r == HNROOT_RESULT_CHECKSUM ? GRUB_ERR_BAD_PART_TABLE : GRUB_ERR_BUG,
		      N_("(%s)'s partition table: %s"), disk->name,
		      (const char *) hnroot_result_text (r));
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

/* The PARTUUID of DEVICE (ROLE: hostpart or the ESP) for the kernel command line, or "" with
   a line saying why (a filesystem on a whole disk or on an MBR logical partition has none).
   Handled on purpose: the initramfs then looks for LABEL instead, so the boot goes on.  NULL
   only when memory runs out or hnroot has a bug.  */
char *
hnroot_grub_part_uuid (const char *device, const char *role, const char *label,
		       struct hnroot_probe_ctx *probe)
{
  char *uuid = part_uuid (device, probe);

  if (uuid)
    return uuid;
  if (grub_errno == GRUB_ERR_OUT_OF_MEMORY || grub_errno == GRUB_ERR_BUG)
    return NULL;
  grub_printf ("hnroot: no PARTUUID for %s (%s): %s; the kernel command line names none and "
	       "the initramfs looks for LABEL=%s instead\n", role, device, grub_errmsg, label);
  grub_errno = GRUB_ERR_NONE;
  return grub_strdup ("");
}
