/* test_ffi.c - hnroot-ffi's C ABI as a C program sees it: compiled against the committed
   include/hnroot.h, linked with hnroot-ffi, every function called with good arguments, NULL
   pointers, uninitialised prober storage, more bytes than asked and short buffers.  The probers
   run on images made by real tools (mkfs.ext4, mkfs.vfat, sgdisk, sfdisk), named on the command
   line:

     test_ffi EXT4 EXT4_UUID VFAT VFAT_ID GPT GPT_PARTUUID1 GPT_PARTUUID2 MBR MBR_DISK_ID

   EXT4 is labelled `hostpart', VFAT `EFI-BOOT'; GPT has partition 1 `EFI-BOOT' at sector 2048
   (1 MiB) and partition 2 `hostpart' after it; MBR has two primary partitions.  Prints one line
   per failed check and "N passed, M failed" at the end; returns non-zero on any failure.

   `cargo test -p hnroot-ffi-ctest` runs it: the crate's build script compiles this file with
   -Dmain=hnroot_c_test_main into a static library, and tests/c_program.rs makes the images,
   calls hnroot_c_test_main in its own process and reads the two counters below.  It still
   builds as a program of its own with any C11 compiler.  */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hnroot.h"

/* The boot-state file's size (two 512-byte copies), as the header says.  */
#define STATE_LEN HNROOT_BOOTSTATE_LEN

/* Checks passed and failed.  Not static: tests/c_program.rs reads them after main returns.  */
extern int hnroot_c_test_passed, hnroot_c_test_failed;
int hnroot_c_test_passed, hnroot_c_test_failed;

#define CHECK(cond)							\
  do {									\
    if (cond)								\
      hnroot_c_test_passed++;						\
    else								\
      {									\
	hnroot_c_test_failed++;						\
	fprintf (stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      }									\
  } while (0)

/* Called by the library only if the core panics.  */
void hnroot_ffi_abort (void);
void
hnroot_ffi_abort (void)
{
  fprintf (stderr, "hnroot_ffi_abort: the core panicked\n");
  abort ();
}

static struct hnroot_uuid
uuid128 (uint8_t fill)
{
  struct hnroot_uuid u;

  memset (&u, 0, sizeof (u));
  u.kind = HNROOT_UUID_128;
  memset (u.bytes, fill, sizeof (u.bytes));
  return u;
}

static void
set_readable (struct hnroot_observation *obs, uint8_t image, uint8_t fill)
{
  obs->images[image].kind = HNROOT_IMAGE_BOOTABLE;
  obs->images[image].uuid = uuid128 (fill);
}

static int
all_bytes (const void *p, size_t len, uint8_t value)
{
  const uint8_t *b = p;
  size_t i;

  for (i = 0; i < len; i++)
    if (b[i] != value)
      return 0;
  return 1;
}

static void
test_image_file_name (void)
{
  static const char *const names[] = {
    "hn-root.img", "hn-root-old.img", "hn-root-new.img", "hn-root-cancelled.img",
    "hn-root-broken.img",
  };
  unsigned i;

  for (i = 0; i < HNROOT_IMAGE_COUNT; i++)
    {
      const char *name = (const char *) hnroot_image_file_name ((uint8_t) i);
      CHECK (name != NULL && strcmp (name, names[i]) == 0);
    }
  CHECK (hnroot_image_file_name (HNROOT_IMAGE_COUNT) == NULL);
  CHECK (hnroot_image_file_name (255) == NULL);
}

static void
test_uuid_format (void)
{
  struct hnroot_uuid u = uuid128 (0xab);
  struct hnroot_uuid fat, none, bad;
  char buf[40];

  CHECK (hnroot_uuid_format (&u, (uint8_t *) buf, sizeof (buf)) == HNROOT_RESULT_OK);
  CHECK (strcmp (buf, "abababab-abab-abab-abab-abababababab") == 0);
  /* 36 characters and the NUL: 37 fits, 36 does not and writes nothing.  */
  memset (buf, 0x55, sizeof (buf));
  CHECK (hnroot_uuid_format (&u, (uint8_t *) buf, 36) == HNROOT_RESULT_BUFFER_TOO_SHORT);
  CHECK (all_bytes (buf, sizeof (buf), 0x55));
  CHECK (hnroot_uuid_format (&u, (uint8_t *) buf, 37) == HNROOT_RESULT_OK);
  CHECK (buf[36] == '\0');

  memset (&fat, 0, sizeof (fat));
  fat.kind = HNROOT_UUID_FAT;
  fat.bytes[0] = 0x12; fat.bytes[1] = 0x34; fat.bytes[2] = 0xab; fat.bytes[3] = 0xcd;
  CHECK (hnroot_uuid_format (&fat, (uint8_t *) buf, sizeof (buf)) == HNROOT_RESULT_OK);
  CHECK (strcmp (buf, "1234-ABCD") == 0);

  memset (&none, 0, sizeof (none));
  CHECK (hnroot_uuid_format (&none, (uint8_t *) buf, 1) == HNROOT_RESULT_OK);
  CHECK (buf[0] == '\0');

  bad = u;
  bad.kind = 7;
  CHECK (hnroot_uuid_format (&bad, (uint8_t *) buf, sizeof (buf))
	 == HNROOT_RESULT_INVALID_ARGUMENT);
  CHECK (hnroot_uuid_format (NULL, (uint8_t *) buf, sizeof (buf))
	 == HNROOT_RESULT_NULL_ARGUMENT);
  CHECK (hnroot_uuid_format (&u, NULL, sizeof (buf)) == HNROOT_RESULT_NULL_ARGUMENT);
}

/* The decision's key=value record and the two command lines of the last decide().  */
static char last_record[HNROOT_TEXT_LEN];
static char last_cmdline[HNROOT_CMDLINE_LEN];
static char last_fallback[HNROOT_CMDLINE_LEN];

/* No PARTUUIDs, no kernel arguments.  */
static struct hnroot_boot_parts no_parts;

/* hnroot_decide with the boot-state file kind KIND and bytes BLOCK, the message into MESSAGE
   (MESSAGE_LEN bytes), the rest into the last_* buffers.  */
static hnroot_result
decide_kind (const struct hnroot_observation *obs, uint8_t kind, const uint8_t *block,
	     size_t len, const struct hnroot_boot_parts *parts, struct hnroot_decision *d,
	     uint8_t *message, size_t message_len)
{
  struct hnroot_decision_text text = {
    .message = { message, message_len },
    .record = { (uint8_t *) last_record, sizeof (last_record) },
    .cmdline = { (uint8_t *) last_cmdline, sizeof (last_cmdline) },
    .fallback_cmdline = { (uint8_t *) last_fallback, sizeof (last_fallback) },
  };

  return hnroot_decide (obs, kind, block, len, parts, d, &text);
}

/* hnroot_decide with the boot-state file as read (`block`), or absent (`block` NULL).  */
static hnroot_result
decide (const struct hnroot_observation *obs, const uint8_t *block, size_t len,
	struct hnroot_decision *d, uint8_t *message, size_t message_len)
{
  return decide_kind (obs, block ? HNROOT_STATE_FILE_READ : HNROOT_STATE_FILE_ABSENT, block,
		      len, &no_parts, d, message, message_len);
}

static void
test_decide_and_encode (void)
{
  struct hnroot_observation obs;
  struct hnroot_decision d, untouched;
  uint8_t block[STATE_LEN];
  char message[1024], description[512];
  uint32_t offset = 77, len = 77;
  int round;

  memset (&obs, 0, sizeof (obs));
  memset (block, 0, sizeof (block));
  set_readable (&obs, HNROOT_IMAGE_CURRENT, 0x0a);
  set_readable (&obs, HNROOT_IMAGE_NEW, 0x0b);

  /* A blank (never written) file: the update boots and asks for a trial to be written.  */
  CHECK (decide (&obs, block, sizeof (block), &d, (uint8_t *) message,
			sizeof (message)) == HNROOT_RESULT_OK);
  CHECK (d.reason == HNROOT_REASON_UPDATE);
  CHECK (d.image == HNROOT_IMAGE_NEW);
  CHECK (d.uuid.kind == HNROOT_UUID_128 && all_bytes (d.uuid.bytes, 16, 0x0b));
  CHECK (d.attempt == 1 && d.of == HNROOT_DEFAULT_TRIES);
  CHECK (d.fallback_count == 1 && d.fallbacks[0] == HNROOT_IMAGE_CURRENT);
  CHECK (all_bytes (d.fallback_uuids[0].bytes, 16, 0x0a));
  CHECK (d.state_seen == 0);
  CHECK (d.write.kind == HNROOT_STATE_TRIAL);
  CHECK (d.write.tries_left == 2 && d.write.tries_total == 3);
  CHECK (strncmp (message, "booting hn-root-new.img (update, trial 1 of 3); fallback hn-root.img",
		  68) == 0);
  CHECK (strncmp (last_record, "reason=update image=hn-root-new.img uuid=0b0b0b0b-", 50) == 0);
  CHECK (strstr (last_record, " try=1/3 ") != NULL);
  CHECK (strstr (last_record, " write=trial args=- refused=-") != NULL);
  /* The whole command line of the staged image, and of hn-root.img for GRUB's next entry.  */
  CHECK (strncmp (last_cmdline, "hnroot.image=hn-root-new.img hnroot.uuid=0b0b0b0b-", 50) == 0);
  CHECK (strstr (last_cmdline, " hnroot.reason=update boot=hnroot") != NULL);
  CHECK (strncmp (last_fallback, "hnroot.image=hn-root.img ", 25) == 0);
  CHECK (strstr (last_fallback, " hnroot.reason=next-image boot=hnroot") != NULL);
  CHECK (d.unwritten == HNROOT_UNWRITTEN_BOOT_UNCOUNTED);

  /* Something at the path that cannot be read as a file: decided as a corrupt state (a trial
     for the current image), as GRUB does.  */
  CHECK (decide_kind (&obs, HNROOT_STATE_FILE_UNREADABLE, NULL, 0, &no_parts, &d,
		     (uint8_t *) message, sizeof (message)) == HNROOT_RESULT_OK);
  CHECK (d.state_seen == 1);
  CHECK (strstr (last_record, "state-corrupt") != NULL);
  /* An unknown kind of state file is an invalid argument.  */
  CHECK (decide_kind (&obs, 9, NULL, 0, &no_parts, &d, (uint8_t *) message, sizeof (message))
	 == HNROOT_RESULT_INVALID_ARGUMENT);
  /* No parts: a NULL argument.  */
  CHECK (decide_kind (&obs, HNROOT_STATE_FILE_ABSENT, NULL, 0, NULL, &d, (uint8_t *) message,
		      sizeof (message)) == HNROOT_RESULT_NULL_ARGUMENT);
  CHECK (decide (&obs, block, sizeof (block), &d, (uint8_t *) message, sizeof (message))
	 == HNROOT_RESULT_OK);

  /* Encode, decide again on the result: each boot consumes one try, copies alternate.  */
  for (round = 0; round < 3; round++)
    {
      CHECK (hnroot_bootstate_encode (block, sizeof (block), &d.write, &offset, &len)
	     == HNROOT_RESULT_OK);
      CHECK (len == 512 && offset == (uint32_t) (round % 2) * 512);
      CHECK (decide (&obs, block, sizeof (block), &d, (uint8_t *) message,
			    sizeof (message)) == HNROOT_RESULT_OK);
      CHECK (d.state_seen == 2);
      if (round < 2)
	CHECK (d.reason == HNROOT_REASON_UPDATE && d.attempt == round + 2);
    }
  /* Three tries used: the staged image failed its trial; back to hn-root.img.  */
  CHECK (d.reason == HNROOT_REASON_AUTOMATIC_ROLLBACK);
  CHECK (d.image == HNROOT_IMAGE_CURRENT && d.failed == HNROOT_IMAGE_NEW);

  CHECK (hnroot_bootstate_describe (block, sizeof (block), (uint8_t *) description,
				    sizeof (description)) == HNROOT_RESULT_OK);
  CHECK (strstr (description, "trial of 0b0b0b0b-0b0b-") == description);
  CHECK (strstr (description, "0 of 3 tries left") != NULL);

  /* A short message buffer: an error, and neither output is written.  */
  memset (&d, 0x5a, sizeof (d));
  untouched = d;
  memset (message, 0x5a, sizeof (message));
  CHECK (decide (&obs, NULL, 0, &d, (uint8_t *) message, 10)
	 == HNROOT_RESULT_BUFFER_TOO_SHORT);
  CHECK (memcmp (&d, &untouched, sizeof (d)) == 0);
  CHECK (all_bytes (message, sizeof (message), 0x5a));

  /* NULL arguments.  */
  CHECK (decide (NULL, NULL, 0, &d, (uint8_t *) message, sizeof (message))
	 == HNROOT_RESULT_NULL_ARGUMENT);
  CHECK (decide (&obs, NULL, 0, NULL, (uint8_t *) message, sizeof (message))
	 == HNROOT_RESULT_NULL_ARGUMENT);
  CHECK (decide (&obs, NULL, 0, &d, NULL, sizeof (message))
	 == HNROOT_RESULT_NULL_ARGUMENT);
  CHECK (memcmp (&d, &untouched, sizeof (d)) == 0);

  /* No file at all: absent, and the decision says so.  */
  CHECK (decide (&obs, NULL, 0, &d, (uint8_t *) message, sizeof (message))
	 == HNROOT_RESULT_OK);
  CHECK (d.state_seen == 0);

  /* Invalid observation bytes.  */
  obs.images[HNROOT_IMAGE_OLD].kind = 9;
  CHECK (decide (&obs, NULL, 0, &d, (uint8_t *) message, sizeof (message))
	 == HNROOT_RESULT_INVALID_ARGUMENT);
  obs.images[HNROOT_IMAGE_OLD].kind = HNROOT_IMAGE_BOOTABLE;
  obs.images[HNROOT_IMAGE_OLD].uuid.kind = HNROOT_UUID_NONE;
  CHECK (decide (&obs, NULL, 0, &d, (uint8_t *) message, sizeof (message))
	 == HNROOT_RESULT_INVALID_ARGUMENT);
  obs.images[HNROOT_IMAGE_OLD].kind = HNROOT_IMAGE_ABSENT;

  /* Nothing readable.  */
  memset (&obs, 0, sizeof (obs));
  obs.images[HNROOT_IMAGE_CURRENT].kind = HNROOT_IMAGE_NOT_BOOTABLE;
  CHECK (decide (&obs, NULL, 0, &d, (uint8_t *) message, sizeof (message))
	 == HNROOT_RESULT_OK);
  CHECK (d.reason == HNROOT_REASON_NOTHING_BOOTABLE);
  CHECK (strstr (message, "nothing bootable") == message);
}

static void
test_encode_errors (void)
{
  struct hnroot_bootstate state, none;
  uint8_t block[STATE_LEN + 1];
  uint32_t offset = 7, len = 7;

  memset (&state, 0, sizeof (state));
  state.kind = HNROOT_STATE_COMMITTED;
  state.good = uuid128 (0x0c);
  memset (&none, 0, sizeof (none));
  memset (block, 0, sizeof (block));

  CHECK (hnroot_bootstate_encode (block, STATE_LEN - 1, &state, &offset, &len)
	 == HNROOT_RESULT_BOOTSTATE_SIZE);
  CHECK (hnroot_bootstate_encode (block, STATE_LEN + 1, &state, &offset, &len)
	 == HNROOT_RESULT_BOOTSTATE_SIZE);
  CHECK (all_bytes (block, sizeof (block), 0) && offset == 7 && len == 7);
  CHECK (hnroot_bootstate_encode (block, STATE_LEN, &none, &offset, &len)
	 == HNROOT_RESULT_NOTHING_TO_WRITE);
  CHECK (hnroot_bootstate_encode (NULL, STATE_LEN, &state, &offset, &len)
	 == HNROOT_RESULT_NULL_ARGUMENT);
  CHECK (hnroot_bootstate_encode (block, STATE_LEN, NULL, &offset, &len)
	 == HNROOT_RESULT_NULL_ARGUMENT);
  CHECK (hnroot_bootstate_encode (block, STATE_LEN, &state, NULL, &len)
	 == HNROOT_RESULT_NULL_ARGUMENT);
  CHECK (hnroot_bootstate_encode (block, STATE_LEN, &state, &offset, NULL)
	 == HNROOT_RESULT_NULL_ARGUMENT);
  state.good.kind = HNROOT_UUID_NONE;
  CHECK (hnroot_bootstate_encode (block, STATE_LEN, &state, &offset, &len)
	 == HNROOT_RESULT_INVALID_ARGUMENT);
  state.kind = 42;
  CHECK (hnroot_bootstate_encode (block, STATE_LEN, &state, &offset, &len)
	 == HNROOT_RESULT_INVALID_ARGUMENT);
  state.kind = HNROOT_STATE_TRIAL;
  state.image = uuid128 (0x0d);
  state.tries_left = 4;
  state.tries_total = 3;
  CHECK (hnroot_bootstate_encode (block, STATE_LEN, &state, &offset, &len)
	 == HNROOT_RESULT_INVALID_ARGUMENT);
  CHECK (all_bytes (block, sizeof (block), 0) && offset == 7 && len == 7);

  state.tries_left = 3;
  CHECK (hnroot_bootstate_encode (block, STATE_LEN, &state, &offset, &len)
	 == HNROOT_RESULT_OK);
  CHECK (offset == 0 && len == 512 && memcmp (block, "HNROOTBS", 8) == 0);
}

static void
test_describe (void)
{
  uint8_t block[STATE_LEN];
  char message[512];

  CHECK (hnroot_bootstate_describe (NULL, 0, (uint8_t *) message, sizeof (message))
	 == HNROOT_RESULT_OK);
  CHECK (strncmp (message, "absent", 6) == 0);
  memset (block, 0, sizeof (block));
  CHECK (hnroot_bootstate_describe (block, sizeof (block), (uint8_t *) message,
				    sizeof (message)) == HNROOT_RESULT_OK);
  CHECK (strncmp (message, "empty", 5) == 0);
  memset (block, 0xff, sizeof (block));
  CHECK (hnroot_bootstate_describe (block, sizeof (block), (uint8_t *) message,
				    sizeof (message)) == HNROOT_RESULT_OK);
  CHECK (strncmp (message, "corrupt: copy 0 no HNROOTBS magic", 33) == 0);
  CHECK (hnroot_bootstate_describe (block, 100, (uint8_t *) message, sizeof (message))
	 == HNROOT_RESULT_OK);
  CHECK (strstr (message, "100 bytes") != NULL);
  memset (message, 0x5a, sizeof (message));
  CHECK (hnroot_bootstate_describe (block, sizeof (block), (uint8_t *) message, 8)
	 == HNROOT_RESULT_BUFFER_TOO_SHORT);
  CHECK (all_bytes (message, sizeof (message), 0x5a));
  CHECK (hnroot_bootstate_describe (block, sizeof (block), NULL, sizeof (message))
	 == HNROOT_RESULT_NULL_ARGUMENT);
}

static void
test_reason_code (void)
{
  static const char *const codes[] = {
    "unknown", "normal", "update", "trial", "manual-revert", "revert-refused",
    "automatic-rollback", "trial-exhausted", "recovery", "nothing-bootable", "next-image",
    "unhealthy-fallback", "backoff",
  };
  unsigned i;

  CHECK (sizeof (codes) / sizeof (codes[0]) == HNROOT_REASON_BACKOFF + 1);
  for (i = 0; i <= HNROOT_REASON_BACKOFF; i++)
    {
      const char *code = (const char *) hnroot_reason_code ((uint8_t) i);
      CHECK (code != NULL && strcmp (code, codes[i]) == 0);
    }
  CHECK (hnroot_reason_code (HNROOT_REASON_BACKOFF + 1) == NULL);
  CHECK (hnroot_reason_code (255) == NULL);
}

static void
test_tries (void)
{
  struct hnroot_observation obs;
  struct hnroot_decision d;
  uint8_t block[STATE_LEN];
  char message[1024];

  memset (&obs, 0, sizeof (obs));
  memset (block, 0, sizeof (block));
  set_readable (&obs, HNROOT_IMAGE_CURRENT, 0x0a);
  set_readable (&obs, HNROOT_IMAGE_NEW, 0x0b);
  CHECK (decide (&obs, block, sizeof (block), &d, (uint8_t *) message,
			sizeof (message)) == HNROOT_RESULT_OK);
  CHECK (d.of == HNROOT_DEFAULT_TRIES && d.write.tries_total == HNROOT_DEFAULT_TRIES);
  obs.tries = HNROOT_MAX_TRIES;
  CHECK (decide (&obs, block, sizeof (block), &d, (uint8_t *) message,
			sizeof (message)) == HNROOT_RESULT_OK);
  CHECK (d.of == HNROOT_MAX_TRIES);
  obs.tries = HNROOT_MAX_TRIES + 1;
  CHECK (decide (&obs, block, sizeof (block), &d, (uint8_t *) message,
			sizeof (message)) == HNROOT_RESULT_OK);
  CHECK (d.of == HNROOT_MAX_TRIES);
}

/* A file's bytes (malloc'd), or NULL after a failed check.  */
static uint8_t *
read_file (const char *path, size_t *len)
{
  FILE *f = fopen (path, "rb");
  uint8_t *data = NULL;
  long size;

  *len = 0;
  if (! f)
    {
      hnroot_c_test_failed++;
      fprintf (stderr, "cannot open %s\n", path);
      return NULL;
    }
  if (fseek (f, 0, SEEK_END) == 0 && (size = ftell (f)) > 0 && fseek (f, 0, SEEK_SET) == 0)
    {
      data = malloc ((size_t) size);
      if (data && fread (data, 1, (size_t) size, f) == (size_t) size)
	*len = (size_t) size;
      else
	{
	  free (data);
	  data = NULL;
	}
    }
  fclose (f);
  if (! data)
    {
      hnroot_c_test_failed++;
      fprintf (stderr, "cannot read %s\n", path);
    }
  return data;
}

/* How the test hands bytes to a prober: all it asks for, none (every read fails), only the
   first KiB of each read, or one byte less than asked.  */
enum feeding { FEED_ALL, FEED_NONE, FEED_1K, FEED_ONE_LESS };

/* Drive a filesystem prober over IMAGE as a driver would: the loop bounded by
   HNROOT_FS_PROBE_MAX_READS.  Returns the number of reads, or -1 if the loop failed.  */
static int
fs_probe_image (struct hnroot_fs_probe *p, const uint8_t *image, size_t len,
		enum feeding feeding, struct hnroot_fs_info *info)
{
  uint64_t offset;
  uint32_t want;
  int reads = 0;

  if (hnroot_fs_probe_init (p, len) != HNROOT_RESULT_OK)
    return -1;
  while (hnroot_fs_probe_step (p, &offset, &want) == HNROOT_RESULT_NEED_READ)
    {
      size_t got;

      if (++reads > (int) HNROOT_FS_PROBE_MAX_READS || want > HNROOT_PROBE_MAX_READ
	  || want == 0)
	return -1;
      got = offset >= len ? 0 : (len - offset < want ? len - offset : want);
      if (feeding == FEED_NONE)
	got = 0;
      else if (feeding == FEED_1K && got > 1024)
	got = 1024;
      else if (feeding == FEED_ONE_LESS && got > 0)
	got--;
      if (hnroot_fs_probe_feed (p, got ? image + offset : NULL, got) != HNROOT_RESULT_OK)
	return -1;
    }
  if (hnroot_fs_probe_result (p, info) != HNROOT_RESULT_OK)
    return -1;
  return reads;
}

static int
uuid_text_is (const struct hnroot_uuid *u, const char *text)
{
  char buf[40];

  return hnroot_uuid_format (u, (uint8_t *) buf, sizeof (buf)) == HNROOT_RESULT_OK
    && strcmp (buf, text) == 0;
}

static void
test_fs_type_name (void)
{
  static const char *const names[] = {
    "vfat", "xfs", "ext4dev", "ext4", "ext3", "ext2", "jbd", "btrfs",
  };
  unsigned i;

  CHECK (HNROOT_FS_TYPE_BTRFS + 1 == sizeof (names) / sizeof (names[0]));
  for (i = 0; i <= HNROOT_FS_TYPE_BTRFS; i++)
    {
      const char *name = (const char *) hnroot_fs_type_name ((uint8_t) i);
      CHECK (name != NULL && strcmp (name, names[i]) == 0);
    }
  CHECK (hnroot_fs_type_name (HNROOT_FS_TYPE_BTRFS + 1) == NULL);
  CHECK (hnroot_fs_type_name (255) == NULL);
}

static void
test_fs_probe (const char *ext4_path, const char *ext4_uuid, const char *vfat_path,
	       const char *vfat_id)
{
  struct hnroot_fs_probe *p = malloc (sizeof (*p));
  struct hnroot_fs_info *info = malloc (sizeof (*info)), *untouched = malloc (sizeof (*info));
  uint8_t *ext4, *vfat, *garbage = malloc (300000), *too_much = NULL;
  size_t ext4_len, vfat_len, i;
  uint64_t offset = 77, first_offset;
  uint32_t len = 77, first_len;

  CHECK (sizeof (info->label) == HNROOT_LABEL_BUF_LEN);
  CHECK (HNROOT_LABEL_BUF_LEN == HNROOT_LABEL_MAX + 1);
  ext4 = read_file (ext4_path, &ext4_len);
  vfat = read_file (vfat_path, &vfat_len);
  if (! p || ! info || ! untouched || ! garbage || ! ext4 || ! vfat)
    {
      hnroot_c_test_failed++;
      goto done;
    }

  /* ext4 made by mkfs.ext4: type, label, UUID.  */
  CHECK (fs_probe_image (p, ext4, ext4_len, FEED_ALL, info) >= 1);
  CHECK (info->outcome == HNROOT_FS_FOUND && info->fs_type == HNROOT_FS_TYPE_EXT4);
  CHECK (info->has_label && info->label_len == 8 && strcmp ((char *) info->label, "hostpart") == 0);
  CHECK (! info->has_label_fatboot);
  CHECK (info->uuid.kind == HNROOT_UUID_128 && uuid_text_is (&info->uuid, ext4_uuid));
  CHECK (info->fs_size == ext4_len && info->missing_bytes == 0);
  /* Found by its label, byte for byte, as Linux finds it.  */
  {
    bool yes = false;

    CHECK (hnroot_fs_labelled (p, (const uint8_t *) "hostpart", 8, &yes) == HNROOT_RESULT_OK
	   && yes);
    CHECK (hnroot_fs_labelled (p, (const uint8_t *) "HOSTPART", 8, &yes) == HNROOT_RESULT_OK
	   && ! yes);
    CHECK (hnroot_fs_labelled (p, (const uint8_t *) "host", 4, &yes) == HNROOT_RESULT_OK
	   && ! yes);
    CHECK (hnroot_fs_labelled (p, NULL, 8, &yes) == HNROOT_RESULT_NULL_ARGUMENT);
    CHECK (hnroot_fs_labelled (p, (const uint8_t *) "hostpart", 8, NULL)
	   == HNROOT_RESULT_NULL_ARGUMENT);
  }

  /* The same filesystem as a copy cut short by 64 KiB: still ext4 with its label (as blkid
     says), and the missing bytes are told.  */
  CHECK (fs_probe_image (p, ext4, ext4_len - 65536, FEED_ALL, info) >= 1);
  CHECK (info->outcome == HNROOT_FS_FOUND && info->fs_type == HNROOT_FS_TYPE_EXT4);
  CHECK (info->has_label && strcmp ((char *) info->label, "hostpart") == 0);
  CHECK (info->fs_size == ext4_len && info->missing_bytes == 65536);

  /* The same storage probes again after init: a FAT volume made by mkfs.vfat.  */
  CHECK (fs_probe_image (p, vfat, vfat_len, FEED_ALL, info) >= 1);
  CHECK (info->outcome == HNROOT_FS_FOUND && info->fs_type == HNROOT_FS_TYPE_VFAT);
  CHECK (info->has_label && strcmp ((char *) info->label, "EFI-BOOT") == 0);
  CHECK (info->has_label_fatboot && strcmp ((char *) info->label_fatboot, "EFI-BOOT") == 0);
  CHECK (info->uuid.kind == HNROOT_UUID_FAT && uuid_text_is (&info->uuid, vfat_id));
  CHECK (info->fs_size > 0 && info->fs_size <= vfat_len && info->missing_bytes == 0);

  /* Reads that fail, or short ones that miss the superblock (at byte 1024): not a filesystem,
     no label.  One byte short still holds the superblock: found.  */
  CHECK (fs_probe_image (p, ext4, ext4_len, FEED_NONE, info) >= 1);
  CHECK (info->outcome == HNROOT_FS_UNKNOWN && ! info->has_label
	 && info->uuid.kind == HNROOT_UUID_NONE);
  CHECK (fs_probe_image (p, ext4, ext4_len, FEED_1K, info) >= 1);
  CHECK (info->outcome == HNROOT_FS_UNKNOWN && ! info->has_label);
  CHECK (fs_probe_image (p, ext4, ext4_len, FEED_ONE_LESS, info) >= 1);
  CHECK (info->outcome == HNROOT_FS_FOUND && info->fs_type == HNROOT_FS_TYPE_EXT4);

  /* Garbage: nothing; the label buffer is cleared.  */
  for (i = 0; i < 300000; i++)
    garbage[i] = (uint8_t) ((i * 2654435761u) >> 13);
  CHECK (fs_probe_image (p, garbage, 300000, FEED_ALL, info) >= 1);
  CHECK (info->outcome == HNROOT_FS_UNKNOWN && ! info->has_label && info->label[0] == 0
	 && info->fs_size == 0 && info->missing_bytes == 0);

  /* A device too small for any filesystem: done without a read.  */
  CHECK (hnroot_fs_probe_init (p, 100) == HNROOT_RESULT_OK);
  CHECK (hnroot_fs_probe_step (p, &offset, &len) == HNROOT_RESULT_DONE);
  CHECK (offset == 77 && len == 77);
  CHECK (hnroot_fs_probe_result (p, info) == HNROOT_RESULT_OK
	 && info->outcome == HNROOT_FS_UNKNOWN);
  /* Done: nothing more to feed.  */
  CHECK (hnroot_fs_probe_feed (p, ext4, 1) == HNROOT_RESULT_PROBE_STATE);

  /* Uninitialised storage (no magic): refused, nothing written.  */
  memset (p, 0xa5, sizeof (*p));
  memset (info, 0x5a, sizeof (*info));
  memcpy (untouched, info, sizeof (*info));
  CHECK (hnroot_fs_probe_step (p, &offset, &len) == HNROOT_RESULT_PROBE_STATE);
  CHECK (offset == 77 && len == 77);
  CHECK (hnroot_fs_probe_feed (p, ext4, 1) == HNROOT_RESULT_PROBE_STATE);
  CHECK (hnroot_fs_probe_result (p, info) == HNROOT_RESULT_PROBE_STATE);
  CHECK (memcmp (info, untouched, sizeof (*info)) == 0);

  /* Mid-probe: the result is not there yet; more bytes than asked are refused and nothing is
     consumed (the same read is asked again); NULL data with a length is refused.  */
  CHECK (hnroot_fs_probe_init (p, ext4_len) == HNROOT_RESULT_OK);
  CHECK (hnroot_fs_probe_step (p, &first_offset, &first_len) == HNROOT_RESULT_NEED_READ);
  CHECK (first_offset == 0 && first_len == HNROOT_PROBE_MAX_READ);
  CHECK (hnroot_fs_probe_result (p, info) == HNROOT_RESULT_PROBE_STATE);
  CHECK (memcmp (info, untouched, sizeof (*info)) == 0);
  too_much = malloc ((size_t) first_len + 1);
  if (too_much)
    {
      memcpy (too_much, ext4, first_len);
      too_much[first_len] = 0;
      CHECK (hnroot_fs_probe_feed (p, too_much, (size_t) first_len + 1)
	     == HNROOT_RESULT_PROBE_STATE);
    }
  CHECK (hnroot_fs_probe_feed (p, NULL, 10) == HNROOT_RESULT_PROBE_STATE);
  CHECK (hnroot_fs_probe_step (p, &offset, &len) == HNROOT_RESULT_NEED_READ);
  CHECK (offset == first_offset && len == first_len);
  /* Stepping twice without feeding asks for the same bytes.  */
  CHECK (hnroot_fs_probe_step (p, &offset, &len) == HNROOT_RESULT_NEED_READ);
  CHECK (offset == first_offset && len == first_len);

  /* NULL arguments.  */
  CHECK (hnroot_fs_probe_init (NULL, 1 << 20) == HNROOT_RESULT_NULL_ARGUMENT);
  CHECK (hnroot_fs_probe_step (NULL, &offset, &len) == HNROOT_RESULT_NULL_ARGUMENT);
  CHECK (hnroot_fs_probe_step (p, NULL, &len) == HNROOT_RESULT_NULL_ARGUMENT);
  CHECK (hnroot_fs_probe_step (p, &offset, NULL) == HNROOT_RESULT_NULL_ARGUMENT);
  CHECK (hnroot_fs_probe_feed (NULL, ext4, 1) == HNROOT_RESULT_NULL_ARGUMENT);
  CHECK (hnroot_fs_probe_result (NULL, info) == HNROOT_RESULT_NULL_ARGUMENT);
  CHECK (fs_probe_image (p, ext4, ext4_len, FEED_ALL, info) >= 1);
  CHECK (hnroot_fs_probe_result (p, NULL) == HNROOT_RESULT_NULL_ARGUMENT);

 done:
  free (too_much);
  free (garbage);
  free (vfat);
  free (ext4);
  free (untouched);
  free (info);
  free (p);
}

/* Drive a partition-table prober over DISK (bounded by HNROOT_PT_PROBE_MAX_READS).  */
static int
pt_probe_disk (struct hnroot_pt_probe *p, const uint8_t *disk, size_t len,
	       struct hnroot_pt_info *info)
{
  uint64_t offset;
  uint32_t want;
  int reads = 0;

  if (hnroot_pt_probe_init (p, len, 512) != HNROOT_RESULT_OK)
    return -1;
  while (hnroot_pt_probe_step (p, &offset, &want) == HNROOT_RESULT_NEED_READ)
    {
      size_t got;

      if (++reads > (int) HNROOT_PT_PROBE_MAX_READS || want > HNROOT_PROBE_MAX_READ)
	return -1;
      got = offset >= len ? 0 : (len - offset < want ? len - offset : want);
      if (hnroot_pt_probe_feed (p, got ? disk + offset : NULL, got) != HNROOT_RESULT_OK)
	return -1;
    }
  if (hnroot_pt_probe_result (p, info) != HNROOT_RESULT_OK)
    return -1;
  return reads;
}

static void
test_pt_probe (const char *gpt_path, const char *partuuid1, const char *partuuid2,
	       const char *mbr_path, const char *mbr_id)
{
  struct hnroot_pt_probe *p = malloc (sizeof (*p));
  struct hnroot_partition *part = malloc (sizeof (*part)), *untouched = malloc (sizeof (*part));
  struct hnroot_pt_info info, info_before;
  uint8_t *gpt, *mbr, *entries = NULL, *zeros = calloc (1, 1 << 20);
  size_t gpt_len, mbr_len;
  uint64_t offset = 77;
  uint32_t len = 77;
  char expected[40];

  gpt = read_file (gpt_path, &gpt_len);
  mbr = read_file (mbr_path, &mbr_len);
  if (! p || ! part || ! untouched || ! zeros || ! gpt || ! mbr)
    {
      hnroot_c_test_failed++;
      goto done;
    }

  /* GPT written by sgdisk: both partitions with their PARTUUIDs and names.  */
  CHECK (pt_probe_disk (p, gpt, gpt_len, &info) >= 1);
  CHECK (info.kind == HNROOT_PT_GPT && ! info.from_backup);
  CHECK (info.entries_len == 128 * 128 && info.entries_offset == 1024);
  entries = gpt + info.entries_offset;
  CHECK (hnroot_pt_partition (p, entries, info.entries_len, 0, part) == HNROOT_RESULT_OK);
  CHECK (part->number == 1 && part->start == 2048 * 512 && part->size == 1 << 20);
  CHECK (strcmp ((char *) part->partuuid, partuuid1) == 0);
  CHECK (part->name_len == 8 && strcmp ((char *) part->name, "EFI-BOOT") == 0);
  CHECK (hnroot_pt_partition (p, entries, info.entries_len, 1, part) == HNROOT_RESULT_OK);
  CHECK (part->number == 2 && part->start == (2048 + 2048) * 512);
  CHECK (strcmp ((char *) part->partuuid, partuuid2) == 0);
  CHECK (strcmp ((char *) part->name, "hostpart") == 0);
  /* Past the last partition, a damaged or short entry array, NULL: nothing written.  */
  memset (part, 0x5a, sizeof (*part));
  memcpy (untouched, part, sizeof (*part));
  CHECK (hnroot_pt_partition (p, entries, info.entries_len, 2, part) == HNROOT_RESULT_DONE);
  CHECK (hnroot_pt_partition (p, entries, info.entries_len, 0xffffffffu, part)
	 == HNROOT_RESULT_DONE);
  CHECK (hnroot_pt_partition (p, entries, info.entries_len - 1, 0, part)
	 == HNROOT_RESULT_CHECKSUM);
  entries[5] ^= 1;
  CHECK (hnroot_pt_partition (p, entries, info.entries_len, 0, part)
	 == HNROOT_RESULT_CHECKSUM);
  entries[5] ^= 1;
  CHECK (hnroot_pt_partition (p, NULL, info.entries_len, 0, part)
	 == HNROOT_RESULT_NULL_ARGUMENT);
  CHECK (hnroot_pt_partition (p, entries, info.entries_len, 0, NULL)
	 == HNROOT_RESULT_NULL_ARGUMENT);
  CHECK (memcmp (part, untouched, sizeof (*part)) == 0);

  /* The primary header damaged: the backup at the end of the disk is used.  */
  gpt[512 + 40] ^= 0xff;
  CHECK (pt_probe_disk (p, gpt, gpt_len, &info) >= 2);
  CHECK (info.kind == HNROOT_PT_GPT && info.from_backup);
  CHECK (info.entries_offset + info.entries_len <= gpt_len);
  if (info.entries_offset + info.entries_len <= gpt_len)
    {
      CHECK (hnroot_pt_partition (p, gpt + info.entries_offset, info.entries_len, 1, part)
	     == HNROOT_RESULT_OK);
      CHECK (strcmp ((char *) part->partuuid, partuuid2) == 0);
    }
  gpt[512 + 40] ^= 0xff;

  /* MBR written by sfdisk: primary partitions, no entry array needed.  */
  CHECK (pt_probe_disk (p, mbr, mbr_len, &info) >= 1);
  CHECK (info.kind == HNROOT_PT_MBR);
  CHECK (hnroot_pt_partition (p, NULL, 0, 0, part) == HNROOT_RESULT_OK);
  snprintf (expected, sizeof (expected), "%s-01", mbr_id);
  CHECK (part->number == 1 && part->start == 2048 * 512);
  CHECK (strcmp ((char *) part->partuuid, expected) == 0 && part->name_len == 0);
  CHECK (hnroot_pt_partition (p, NULL, 0, 1, part) == HNROOT_RESULT_OK);
  snprintf (expected, sizeof (expected), "%s-02", mbr_id);
  CHECK (part->number == 2 && strcmp ((char *) part->partuuid, expected) == 0);
  CHECK (hnroot_pt_partition (p, NULL, 0, 2, part) == HNROOT_RESULT_DONE);

  /* No table at all.  */
  CHECK (pt_probe_disk (p, zeros, 1 << 20, &info) >= 1);
  CHECK (info.kind == HNROOT_PT_NONE);
  CHECK (hnroot_pt_partition (p, NULL, 0, 0, part) == HNROOT_RESULT_DONE);

  /* Mid-probe: no result yet, more bytes than asked refused, the read asked again.  */
  CHECK (hnroot_pt_probe_init (p, gpt_len, 512) == HNROOT_RESULT_OK);
  CHECK (hnroot_pt_probe_step (p, &offset, &len) == HNROOT_RESULT_NEED_READ);
  CHECK (offset == 0 && len == HNROOT_PROBE_MAX_READ);
  memset (&info, 0x5a, sizeof (info));
  info_before = info;
  CHECK (hnroot_pt_probe_result (p, &info) == HNROOT_RESULT_PROBE_STATE);
  CHECK (memcmp (&info, &info_before, sizeof (info)) == 0);
  CHECK (hnroot_pt_partition (p, entries, 128 * 128, 0, part) == HNROOT_RESULT_PROBE_STATE);
  CHECK (hnroot_pt_probe_feed (p, gpt, (size_t) len + 1) == HNROOT_RESULT_PROBE_STATE);
  CHECK (hnroot_pt_probe_feed (p, NULL, 1) == HNROOT_RESULT_PROBE_STATE);
  offset = len = 77;
  CHECK (hnroot_pt_probe_step (p, &offset, &len) == HNROOT_RESULT_NEED_READ);
  CHECK (offset == 0 && len == HNROOT_PROBE_MAX_READ);
  CHECK (hnroot_pt_probe_feed (p, gpt, len) == HNROOT_RESULT_OK);
  CHECK (hnroot_pt_probe_step (p, &offset, &len) == HNROOT_RESULT_DONE);
  CHECK (hnroot_pt_probe_feed (p, gpt, 1) == HNROOT_RESULT_PROBE_STATE);

  /* A disk smaller than a sector: no table, no read.  */
  CHECK (hnroot_pt_probe_init (p, 100, 512) == HNROOT_RESULT_OK);
  CHECK (hnroot_pt_probe_step (p, &offset, &len) == HNROOT_RESULT_DONE);
  CHECK (hnroot_pt_probe_result (p, &info) == HNROOT_RESULT_OK && info.kind == HNROOT_PT_NONE);

  /* Uninitialised storage and NULL arguments.  */
  memset (p, 0, sizeof (*p));
  memset (part, 0x5a, sizeof (*part));
  memcpy (untouched, part, sizeof (*part));
  offset = len = 77;
  CHECK (hnroot_pt_probe_step (p, &offset, &len) == HNROOT_RESULT_PROBE_STATE);
  CHECK (offset == 77 && len == 77);
  CHECK (hnroot_pt_probe_feed (p, gpt, 1) == HNROOT_RESULT_PROBE_STATE);
  CHECK (hnroot_pt_probe_result (p, &info) == HNROOT_RESULT_PROBE_STATE);
  CHECK (hnroot_pt_partition (p, NULL, 0, 0, part) == HNROOT_RESULT_PROBE_STATE);
  CHECK (memcmp (part, untouched, sizeof (*part)) == 0);
  CHECK (hnroot_pt_probe_init (NULL, gpt_len, 512) == HNROOT_RESULT_NULL_ARGUMENT);
  CHECK (hnroot_pt_probe_step (NULL, &offset, &len) == HNROOT_RESULT_NULL_ARGUMENT);
  CHECK (hnroot_pt_probe_step (p, NULL, &len) == HNROOT_RESULT_NULL_ARGUMENT);
  CHECK (hnroot_pt_probe_step (p, &offset, NULL) == HNROOT_RESULT_NULL_ARGUMENT);
  CHECK (hnroot_pt_probe_feed (NULL, gpt, 1) == HNROOT_RESULT_NULL_ARGUMENT);
  CHECK (hnroot_pt_probe_result (NULL, &info) == HNROOT_RESULT_NULL_ARGUMENT);
  CHECK (hnroot_pt_partition (NULL, NULL, 0, 0, part) == HNROOT_RESULT_NULL_ARGUMENT);
  CHECK (pt_probe_disk (p, gpt, gpt_len, &info) >= 1);
  CHECK (hnroot_pt_probe_result (p, NULL) == HNROOT_RESULT_NULL_ARGUMENT);

 done:
  free (zeros);
  free (mbr);
  free (gpt);
  free (untouched);
  free (part);
  free (p);
}

static void
test_partuuid_check (const char *gpt_partuuid, const char *mbr_id)
{
  char mbr[32];
  const uint8_t bad_utf8[] = { 0xff, 0xfe, '-', '0', '1' };

  snprintf (mbr, sizeof (mbr), "%s-02", mbr_id);
  CHECK (hnroot_partuuid_check ((const uint8_t *) gpt_partuuid, strlen (gpt_partuuid))
	 == HNROOT_RESULT_OK);
  CHECK (hnroot_partuuid_check ((const uint8_t *) mbr, strlen (mbr)) == HNROOT_RESULT_OK);
  /* Cut short, path-like, empty, not UTF-8, NULL.  */
  CHECK (hnroot_partuuid_check ((const uint8_t *) gpt_partuuid, strlen (gpt_partuuid) - 1)
	 == HNROOT_RESULT_INVALID_ARGUMENT);
  CHECK (hnroot_partuuid_check ((const uint8_t *) "../x", 4) == HNROOT_RESULT_INVALID_ARGUMENT);
  CHECK (hnroot_partuuid_check ((const uint8_t *) "", 0) == HNROOT_RESULT_INVALID_ARGUMENT);
  CHECK (hnroot_partuuid_check (bad_utf8, sizeof (bad_utf8)) == HNROOT_RESULT_INVALID_ARGUMENT);
  CHECK (hnroot_partuuid_check (NULL, 36) == HNROOT_RESULT_NULL_ARGUMENT);
}

/* The whole command line from C: the fleet's defaults, the image's and the host's arguments,
   overridden key by key; what only hnroot sets refused and named.  */
static void
test_kernel_args (void)
{
  static const char defaults[] = "console=ttyS0 panic=10";
  static const char image[] = "# the image's\nconsole=ttyS1,115200\n";
  static const char host[] = "hnroot-test=1 hnroot.image=hn-root-old.img";
  struct hnroot_observation obs;
  struct hnroot_boot_parts parts;
  struct hnroot_decision d;
  char message[HNROOT_TEXT_LEN];

  memset (&obs, 0, sizeof (obs));
  set_readable (&obs, HNROOT_IMAGE_CURRENT, 0x0a);
  memset (&parts, 0, sizeof (parts));
  parts.hostpart_partuuid = (const uint8_t *) "0fc63daf-8483-4772-8e79-3d69d8477de4";
  parts.defaults = (struct hnroot_args) { HNROOT_ARGS_READ, (const uint8_t *) defaults,
					  strlen (defaults) };
  parts.images[HNROOT_IMAGE_CURRENT] = (struct hnroot_args) { HNROOT_ARGS_READ,
							      (const uint8_t *) image,
							      strlen (image) };
  parts.host = (struct hnroot_args) { HNROOT_ARGS_READ, (const uint8_t *) host,
				      strlen (host) };
  CHECK (decide_kind (&obs, HNROOT_STATE_FILE_ABSENT, NULL, 0, &parts, &d,
		      (uint8_t *) message, sizeof (message)) == HNROOT_RESULT_OK);
  CHECK (strstr (last_cmdline, " hnroot.hostpart=PARTUUID=0fc63daf-8483-4772-8e79-3d69d8477de4 ")
	 != NULL);
  CHECK (strstr (last_cmdline, "boot=hnroot panic=10 console=ttyS1,115200 hnroot-test=1") != NULL);
  CHECK (strstr (last_cmdline, "hnroot.image=hn-root-old.img") == NULL);
  CHECK (strstr (last_record, " args=defaults,image,host refused=host:hnroot.image") != NULL);
  CHECK (strstr (message, "kernel argument hnroot.image= from the host") != NULL);
  CHECK (last_fallback[0] == '\0');
  /* A file that could not be read adds nothing and is said.  */
  parts.host.kind = HNROOT_ARGS_UNREADABLE;
  CHECK (decide_kind (&obs, HNROOT_STATE_FILE_ABSENT, NULL, 0, &parts, &d,
		      (uint8_t *) message, sizeof (message)) == HNROOT_RESULT_OK);
  CHECK (strstr (last_record, "refused=host:unusable") != NULL);
  /* A read file without its bytes is a NULL argument.  */
  parts.host = (struct hnroot_args) { HNROOT_ARGS_READ, NULL, 3 };
  CHECK (decide_kind (&obs, HNROOT_STATE_FILE_ABSENT, NULL, 0, &parts, &d,
		      (uint8_t *) message, sizeof (message)) == HNROOT_RESULT_NULL_ARGUMENT);
}

/* Declared for -Wmissing-prototypes when built with -Dmain=hnroot_c_test_main.  */
int main (int argc, char **argv);

int
main (int argc, char **argv)
{
  test_image_file_name ();
  test_uuid_format ();
  test_decide_and_encode ();
  test_kernel_args ();
  test_encode_errors ();
  test_describe ();
  test_reason_code ();
  test_tries ();
  test_fs_type_name ();
  if (argc != 10)
    {
      hnroot_c_test_failed++;
      fprintf (stderr, "usage: %s EXT4 EXT4_UUID VFAT VFAT_ID GPT GPT_PARTUUID1 "
	       "GPT_PARTUUID2 MBR MBR_DISK_ID (the prober tests need real images)\n", argv[0]);
    }
  else
    {
      test_fs_probe (argv[1], argv[2], argv[3], argv[4]);
      test_pt_probe (argv[5], argv[6], argv[7], argv[8], argv[9]);
      test_partuuid_check (argv[6], argv[9]);
    }
  printf ("%d passed, %d failed\n", hnroot_c_test_passed, hnroot_c_test_failed);
  /* Now, not at exit: in the Rust test the line then stands next to the test's own.  */
  fflush (stdout);
  return hnroot_c_test_failed ? 1 : 0;
}
