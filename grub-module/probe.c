/* probe.c - run hnroot-core's probers over a GRUB disk.  */
/*
 *  The one step/feed loop of hnroot.mod: a prober of the core (the ones the initramfs and
 *  `hnroot probe' use, after libblkid) asks for bytes, this file reads them through
 *  grub_disk_read and hands them back, until the prober answers.  It identifies nothing
 *  itself.
 *
 *  SPDX-License-Identifier: GPL-3.0-or-later
 */

#include <grub/types.h>
#include <grub/mm.h>
#include <grub/misc.h>
#include <grub/err.h>
#include <grub/disk.h>
#include <grub/i18n.h>

#include "hnroot-grub.h"

/* Zeroed storage: a prober is "not initialised" until hnroot_*_probe_init says otherwise, and
   no Rust code ever sees uninitialised bytes.  */
grub_err_t
hnroot_grub_probe_alloc (struct hnroot_probe_ctx *ctx)
{
  ctx->fs = grub_zalloc (sizeof (*ctx->fs));
  ctx->pt = grub_zalloc (sizeof (*ctx->pt));
  ctx->info = grub_zalloc (sizeof (*ctx->info));
  ctx->part = grub_zalloc (sizeof (*ctx->part));
  ctx->buf = grub_zalloc (HNROOT_PROBE_MAX_READ);
  if (! ctx->fs || ! ctx->pt || ! ctx->info || ! ctx->part || ! ctx->buf)
    return grub_errno;
  return GRUB_ERR_NONE;
}

void
hnroot_grub_probe_free (struct hnroot_probe_ctx *ctx)
{
  grub_free (ctx->fs);
  grub_free (ctx->pt);
  grub_free (ctx->info);
  grub_free (ctx->part);
  grub_free (ctx->buf);
}

/* An hnroot-ffi call returned R where it cannot fail when called right.  */
grub_err_t
hnroot_grub_ffi_error (const char *function, hnroot_result r)
{
  return grub_error (GRUB_ERR_BUG, N_("%s: %s (a bug in hnroot)"), function,
		     (const char *) hnroot_result_text (r));
}

/* The size of DISK (a whole disk, a partition or a loopback file) in bytes.  */
grub_err_t
hnroot_grub_disk_size (grub_disk_t disk, grub_uint64_t *size)
{
  grub_uint64_t sectors = grub_disk_native_sectors (disk);

  if (sectors == GRUB_DISK_SIZE_UNKNOWN
      || sectors > (GRUB_DISK_SIZE_UNKNOWN >> GRUB_DISK_SECTOR_BITS))
    return grub_error (GRUB_ERR_BAD_DEVICE, N_("the size of `%s' is unknown"), disk->name);
  *size = sectors << GRUB_DISK_SECTOR_BITS;
  return GRUB_ERR_NONE;
}

/* LEN bytes at byte OFFSET of DISK (relative to its partition, if it is one).  */
grub_err_t
hnroot_grub_read (grub_disk_t disk, grub_uint64_t offset, grub_size_t len, void *buf)
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
      if (hnroot_grub_read (disk, offset + done, piece, buf + done) != GRUB_ERR_NONE)
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

enum prober
  {
    PROBER_FS,
    PROBER_PT,
  };

/* Drive the core's prober KIND (initialised in CTX) to its answer, doing each read it asks
   for on DISK, of which SIZE bytes count, through grub_disk_read.  Bounded by the prober's
   own most reads.  A read GRUB cannot do ends the probe with GRUB's error: a device that
   cannot be read is not identified (but see read_holes_as_zeros for a loopback file).  */
static grub_err_t
run_prober (grub_disk_t disk, grub_uint64_t size, struct hnroot_probe_ctx *ctx,
	    enum prober kind)
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
	return hnroot_grub_ffi_error (kind == PROBER_FS ? "hnroot_fs_probe_step"
				      : "hnroot_pt_probe_step", r);
      if (reads == max)
	break;
      if (len > HNROOT_PROBE_MAX_READ)
	return grub_error (GRUB_ERR_BUG, N_("the %s prober asked for %u bytes, more than %u"),
			   name, len, (unsigned) HNROOT_PROBE_MAX_READ);
      /* Never past SIZE: fewer bytes tell the prober that the device ended.  */
      got = offset >= size ? 0 : (size - offset < len ? (grub_size_t) (size - offset) : len);
      if (got > 0 && hnroot_grub_read (disk, offset, got, ctx->buf) != GRUB_ERR_NONE)
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
	return hnroot_grub_ffi_error (kind == PROBER_FS ? "hnroot_fs_probe_feed"
				      : "hnroot_pt_probe_feed", r);
    }
  return grub_error (GRUB_ERR_BUG, N_("the %s prober asked for more than %u reads of `%s'"),
		     name, max, disk->name);
}

/* Identify the filesystem on DISK, of which SIZE bytes count (a loopback file's own length,
   not its disk's, which GRUB rounds up to whole sectors): the prober's answer is left in
   CTX->fs (for hnroot_image_verdict) and CTX->info.  Fails with grub_errno set when DISK
   cannot be read; the caller decides whether that is expected.  */
grub_err_t
hnroot_grub_probe_fs (grub_disk_t disk, grub_uint64_t size, struct hnroot_probe_ctx *ctx)
{
  hnroot_result r;

  r = hnroot_fs_probe_init (ctx->fs, size);
  if (r != HNROOT_RESULT_OK)
    return hnroot_grub_ffi_error ("hnroot_fs_probe_init", r);
  if (run_prober (disk, size, ctx, PROBER_FS) != GRUB_ERR_NONE)
    return grub_errno;
  r = hnroot_fs_probe_result (ctx->fs, ctx->info);
  if (r != HNROOT_RESULT_OK)
    return hnroot_grub_ffi_error ("hnroot_fs_probe_result", r);
  return GRUB_ERR_NONE;
}

/* Find the partition table of the whole disk WHOLE (SIZE bytes) with the core's prober.  */
grub_err_t
hnroot_grub_probe_pt (grub_disk_t whole, grub_uint64_t size, struct hnroot_probe_ctx *ctx)
{
  hnroot_result r;

  r = hnroot_pt_probe_init (ctx->pt, size, 1U << whole->log_sector_size);
  if (r != HNROOT_RESULT_OK)
    return hnroot_grub_ffi_error ("hnroot_pt_probe_init", r);
  return run_prober (whole, size, ctx, PROBER_PT);
}
