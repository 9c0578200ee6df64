/* test_ffi.c - hnroot-ffi's C ABI as a C program sees it: compiled against the generated
   include/hnroot.h, linked with the host static library, every function called with good
   arguments, NULL pointers and short buffers.  Run by `cargo xtask c-ffi-test`; prints one
   line per failed check and "N passed, M failed" at the end; exits non-zero on any failure.  */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hnroot.h"

/* The boot-state file's size (two 512-byte copies).  */
#define STATE_LEN 1024

static int passed, failed;

#define CHECK(cond)							\
  do {									\
    if (cond)								\
      passed++;								\
    else								\
      {									\
	failed++;							\
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
  obs->images[image].kind = HNROOT_IMAGE_READABLE;
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
  CHECK (hnroot_decide (&obs, block, sizeof (block), &d, (uint8_t *) message,
			sizeof (message)) == HNROOT_RESULT_OK);
  CHECK (d.reason == HNROOT_REASON_UPDATE);
  CHECK (d.image == HNROOT_IMAGE_NEW);
  CHECK (d.uuid.kind == HNROOT_UUID_128 && all_bytes (d.uuid.bytes, 16, 0x0b));
  CHECK (d.attempt == 1 && d.of == 3);
  CHECK (d.fallback_count == 1 && d.fallbacks[0] == HNROOT_IMAGE_CURRENT);
  CHECK (all_bytes (d.fallback_uuids[0].bytes, 16, 0x0a));
  CHECK (d.state_seen == 0);
  CHECK (d.write.kind == HNROOT_STATE_TRIAL);
  CHECK (d.write.tries_left == 2 && d.write.tries_total == 3);
  CHECK (strncmp (message, "booting hn-root-new.img (update, trial 1 of 3); fallback hn-root.img",
		  68) == 0);

  /* Encode, decide again on the result: each boot consumes one try, copies alternate.  */
  for (round = 0; round < 3; round++)
    {
      CHECK (hnroot_bootstate_encode (block, sizeof (block), &d.write, &offset, &len)
	     == HNROOT_RESULT_OK);
      CHECK (len == 512 && offset == (uint32_t) (round % 2) * 512);
      CHECK (hnroot_decide (&obs, block, sizeof (block), &d, (uint8_t *) message,
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
  CHECK (hnroot_decide (&obs, NULL, 0, &d, (uint8_t *) message, 10)
	 == HNROOT_RESULT_BUFFER_TOO_SHORT);
  CHECK (memcmp (&d, &untouched, sizeof (d)) == 0);
  CHECK (all_bytes (message, sizeof (message), 0x5a));

  /* NULL arguments.  */
  CHECK (hnroot_decide (NULL, NULL, 0, &d, (uint8_t *) message, sizeof (message))
	 == HNROOT_RESULT_NULL_ARGUMENT);
  CHECK (hnroot_decide (&obs, NULL, 0, NULL, (uint8_t *) message, sizeof (message))
	 == HNROOT_RESULT_NULL_ARGUMENT);
  CHECK (hnroot_decide (&obs, NULL, 0, &d, NULL, sizeof (message))
	 == HNROOT_RESULT_NULL_ARGUMENT);
  CHECK (memcmp (&d, &untouched, sizeof (d)) == 0);

  /* No file at all: absent, and the decision says so.  */
  CHECK (hnroot_decide (&obs, NULL, 0, &d, (uint8_t *) message, sizeof (message))
	 == HNROOT_RESULT_OK);
  CHECK (d.state_seen == 0);

  /* Invalid observation bytes.  */
  obs.images[HNROOT_IMAGE_OLD].kind = 9;
  CHECK (hnroot_decide (&obs, NULL, 0, &d, (uint8_t *) message, sizeof (message))
	 == HNROOT_RESULT_INVALID_ARGUMENT);
  obs.images[HNROOT_IMAGE_OLD].kind = HNROOT_IMAGE_READABLE;
  obs.images[HNROOT_IMAGE_OLD].uuid.kind = HNROOT_UUID_NONE;
  CHECK (hnroot_decide (&obs, NULL, 0, &d, (uint8_t *) message, sizeof (message))
	 == HNROOT_RESULT_INVALID_ARGUMENT);
  obs.images[HNROOT_IMAGE_OLD].kind = HNROOT_IMAGE_ABSENT;

  /* Nothing readable.  */
  memset (&obs, 0, sizeof (obs));
  obs.images[HNROOT_IMAGE_CURRENT].kind = HNROOT_IMAGE_UNREADABLE;
  CHECK (hnroot_decide (&obs, NULL, 0, &d, (uint8_t *) message, sizeof (message))
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

int
main (void)
{
  test_image_file_name ();
  test_uuid_format ();
  test_decide_and_encode ();
  test_encode_errors ();
  test_describe ();
  printf ("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
