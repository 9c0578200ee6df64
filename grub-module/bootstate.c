/* bootstate.c - read the boot-state file, rewrite it in place.  */
/*
 *  The boot-state file on the ESP is read through GRUB's filesystem driver while a read hook
 *  records where its bytes lie on disk; the core's encoding of the next state is then written
 *  back through that block list, as save_env does for grubenv: only where every byte of the
 *  file was seen on one disk, only after the old bytes read through the block list equal what
 *  the file read returned, and the written range is read back.  What is found at the path is
 *  handed to the core as it is: no file, a file that cannot be read, or its bytes.
 *
 *  SPDX-License-Identifier: GPL-3.0-or-later
 */

#include <grub/types.h>
#include <grub/mm.h>
#include <grub/misc.h>
#include <grub/err.h>
#include <grub/disk.h>
#include <grub/file.h>
#include <grub/partition.h>
#include <grub/i18n.h>

#include "hnroot-grub.h"

#ifndef HNROOT_GRUB_UPSTREAM
#error "HNROOT_GRUB_UPSTREAM (the upstream GRUB release built against, 206 for 2.06) must be defined"
#endif

/* Record where the file's bytes lie on disk: one run per call, merged with the previous run
   when it continues it.  */
static void
record_piece (struct hnroot_state_file *s, grub_disk_addr_t sector, unsigned offset,
	      unsigned length)
{
  struct hnroot_piece *last;

  if (s->count > 0)
    {
      last = &s->pieces[s->count - 1];
      /* Merge a run that continues the previous one.  */
      if ((last->sector << GRUB_DISK_SECTOR_BITS) + last->offset + last->length
	  == (sector << GRUB_DISK_SECTOR_BITS) + offset)
	{
	  last->length += length;
	  return;
	}
    }
  if (s->count >= HNROOT_MAX_PIECES)
    {
      s->overflow = 1;
      return;
    }
  s->pieces[s->count].sector = sector;
  s->pieces[s->count].offset = offset;
  s->pieces[s->count].length = length;
  s->count++;
}

/* GRUB 2.12 hands the hook the bytes read too and lets it fail the read
   (grub_disk_read_hook_t returns grub_err_t); 2.06's hook returns nothing.  */
#if HNROOT_GRUB_UPSTREAM >= 212
static grub_err_t
read_hook (grub_disk_addr_t sector, unsigned offset, unsigned length,
	   char *buf __attribute__ ((unused)), void *data)
{
  record_piece (data, sector, offset, length);
  return GRUB_ERR_NONE;
}
#else
static void
read_hook (grub_disk_addr_t sector, unsigned offset, unsigned length, void *data)
{
  record_piece (data, sector, offset, length);
}
#endif

/* Record that the file at PATH cannot be read, and why (from grub_errno), which is a fact
   for the core, not a failure: grub_errno is cleared.  Fails only when memory runs out.  */
static grub_err_t
unreadable (struct hnroot_state_file *state, const char *path)
{
  state->kind = HNROOT_STATE_FILE_UNREADABLE;
  state->why = grub_xasprintf ("%s: %s", path, grub_errmsg);
  if (! state->why)
    return grub_errno;
  grub_errno = GRUB_ERR_NONE;
  return GRUB_ERR_NONE;
}

/* Read the boot-state file at PATH into STATE (zeroed by the caller).  No file, a file that
   cannot be read (a directory, a read error) and the bytes of a file are all outcomes;
   fails only when memory runs out.  */
grub_err_t
hnroot_grub_state_read (const char *path, struct hnroot_state_file *state)
{
  grub_file_t file;
  grub_ssize_t got;
  grub_size_t size;

  state->kind = HNROOT_STATE_FILE_ABSENT;
  file = grub_file_open (path, GRUB_FILE_TYPE_LOADENV | GRUB_FILE_TYPE_SKIP_SIGNATURE
			 | GRUB_FILE_TYPE_NO_DECOMPRESS);
  if (! file)
    {
      if (grub_errno == GRUB_ERR_FILE_NOT_FOUND)
	{
	  grub_errno = GRUB_ERR_NONE;
	  return GRUB_ERR_NONE;
	}
      if (grub_errno == GRUB_ERR_OUT_OF_MEMORY)
	return grub_errno;
      return unreadable (state, path);
    }
  size = grub_file_size (file);
  /* Read at most one byte more than a valid file has: the core judges the size.  */
  if (size > HNROOT_BOOTSTATE_LEN)
    size = HNROOT_BOOTSTATE_LEN + 1;
  state->bytes = grub_zalloc (size ? size : 1);
  if (! state->bytes)
    {
      grub_file_close (file);
      return grub_errno;
    }
  file->read_hook = read_hook;
  file->read_hook_data = state;
  got = grub_file_read (file, state->bytes, size);
  file->read_hook = NULL;
  if (got < 0 || (grub_size_t) got != size)
    {
      if (! grub_errno)
	grub_error (GRUB_ERR_FILE_READ_ERROR, N_("short read"));
      grub_free (state->bytes);
      state->bytes = NULL;
      grub_file_close (file);
      return unreadable (state, path);
    }
  state->kind = HNROOT_STATE_FILE_READ;
  state->len = size;
  state->file = file;
  return GRUB_ERR_NONE;
}

/* Write WRITE (the core's next state) into the file in place.  Fails with grub_errno set when
   it cannot be written; the caller says so and boots without counting.  */
grub_err_t
hnroot_grub_state_write (struct hnroot_state_file *state, const struct hnroot_bootstate *write)
{
  grub_uint8_t *block = NULL, *check = NULL;
  grub_uint32_t offset = 0, len = 0;
  grub_disk_t disk;
  grub_disk_addr_t part_start;
  grub_size_t index, total = 0;
  hnroot_result r;
  unsigned i;

  if (state->kind == HNROOT_STATE_FILE_UNREADABLE)
    return grub_error (GRUB_ERR_FILE_READ_ERROR, N_("the boot-state file could not be read (%s)"),
		       state->why ? state->why : "no reason given");
  if (state->kind != HNROOT_STATE_FILE_READ || ! state->file)
    return grub_error (GRUB_ERR_FILE_NOT_FOUND, N_("there is no boot-state file (`hnroot "
						   "bootstate init` preallocates it; `hnroot "
						   "install` does)"));
  if (! state->file->device || ! state->file->device->disk)
    return grub_error (GRUB_ERR_BAD_DEVICE, N_("the boot-state file is not on a disk"));
  if (state->overflow)
    return grub_error (GRUB_ERR_BAD_FILE_TYPE,
		       N_("the boot-state file is in more than %d pieces"), HNROOT_MAX_PIECES);
  for (i = 0; i < state->count; i++)
    total += state->pieces[i].length;
  if (total != state->len)
    return grub_error (GRUB_ERR_BAD_FILE_TYPE,
		       N_("the boot-state file's block list covers %" PRIuGRUB_SIZE
			  " of its %" PRIuGRUB_SIZE " bytes (sparse or inline file)"),
		       total, state->len);
  block = grub_malloc (state->len);
  check = grub_malloc (state->len);
  if (! block || ! check)
    goto done;
  grub_memcpy (block, state->bytes, state->len);
  r = hnroot_bootstate_encode (block, state->len, write, &offset, &len);
  if (r != HNROOT_RESULT_OK)
    {
      grub_error (GRUB_ERR_BAD_FILE_TYPE, "%s", (const char *) hnroot_result_text (r));
      goto done;
    }
  if ((grub_size_t) offset + len > state->len)
    {
      grub_error (GRUB_ERR_BUG, N_("hnroot_bootstate_encode wrote past the end"));
      goto done;
    }
  disk = state->file->device->disk;
  part_start = grub_partition_get_start (disk->partition);

  /* The block list must give back exactly what the file read gave.  */
  for (i = 0, index = 0; i < state->count; index += state->pieces[i].length, i++)
    if (grub_disk_read (disk, state->pieces[i].sector - part_start, state->pieces[i].offset,
			state->pieces[i].length, check + index) != GRUB_ERR_NONE)
      goto done;
  if (grub_memcmp (check, state->bytes, state->len) != 0)
    {
      grub_error (GRUB_ERR_FILE_READ_ERROR,
		  N_("the boot-state file's block list does not match its contents"));
      goto done;
    }

  /* Write the changed range, piece by piece, then read it back.  */
  for (i = 0, index = 0; i < state->count; index += state->pieces[i].length, i++)
    {
      const struct hnroot_piece *p = &state->pieces[i];
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
  grub_memcpy (state->bytes, block, state->len);

 done:
  grub_free (block);
  grub_free (check);
  return grub_errno;
}

void
hnroot_grub_state_close (struct hnroot_state_file *state)
{
  if (state->file)
    grub_file_close (state->file);
  grub_free (state->bytes);
  grub_free (state->why);
  state->file = NULL;
  state->bytes = NULL;
  state->why = NULL;
}
