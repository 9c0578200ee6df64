/* verify.c - under lockdown (Secure Boot), the kernel and initrd GRUB loads are the ones a
   held seal states.  */
/*
 *  With Secure Boot on, GRUB locks down and asks a verifier to vouch for every kernel it
 *  loads.  hnroot's loader is built without shim's verifier (it is started by the firmware,
 *  signed with the operator's db key), and vouches itself: `hnroot select' remembers the seal of
 *  each image whose seal held (observe.c), and when `linux' or `initrd' opens a file, this
 *  verifier hashes the very bytes GRUB is about to load and asks the core whether a held seal
 *  states them (hnroot_seal_check_file).  A file no held seal states is refused, so a signed
 *  loader boots sealed images only (and `hnroot install' signs a loader only with
 *  --require-sealed).  Without lockdown the verifier claims nothing: the seal's hashes are
 *  checked while the image is observed, as always.
 *
 *  SPDX-License-Identifier: GPL-3.0-or-later
 */

#include <grub/crypto.h>
#include <grub/err.h>
#include <grub/file.h>
#include <grub/lockdown.h>
#include <grub/misc.h>
#include <grub/mm.h>
#include <grub/verify.h>

#include "hnroot-grub.h"

/* The seals that held in the last observation, one per image name.  */
static struct hnroot_seal held[HNROOT_IMAGE_COUNT];
static unsigned held_count;

void
hnroot_grub_trust_reset (void)
{
  grub_memset (held, 0, sizeof (held));
  held_count = 0;
}

void
hnroot_grub_trust_seal (const struct hnroot_seal *seal)
{
  if (seal->kind == HNROOT_SEAL_SEALED && held_count < ARRAY_SIZE (held))
    held[held_count++] = *seal;
}

static grub_err_t
hnroot_verifier_init (grub_file_t io __attribute__ ((unused)), enum grub_file_type type,
		      void **context, enum grub_verify_flags *flags)
{
  grub_uint8_t which;

  *flags = GRUB_VERIFY_FLAGS_SKIP_VERIFICATION;
  if (grub_is_lockdown () != GRUB_LOCKDOWN_ENABLED)
    return GRUB_ERR_NONE;
  switch (type & GRUB_FILE_TYPE_MASK)
    {
    case GRUB_FILE_TYPE_LINUX_KERNEL:
      which = HNROOT_BOOT_FILE_KERNEL;
      break;
    case GRUB_FILE_TYPE_LINUX_INITRD:
      which = HNROOT_BOOT_FILE_INITRAMFS;
      break;
    default:
      return GRUB_ERR_NONE;
    }
  *flags = GRUB_VERIFY_FLAGS_SINGLE_CHUNK;
  *context = (void *) (grub_addr_t) which;
  return GRUB_ERR_NONE;
}

static grub_err_t
hnroot_verifier_write (void *context, void *buf, grub_size_t size)
{
  grub_uint8_t which = (grub_uint8_t) (grub_addr_t) context;
  const gcry_md_spec_t *md = GRUB_MD_SHA256;
  grub_uint8_t digest[32], matches, problem;
  hnroot_result r;
  void *ctx;
  unsigned i;

  /* gcry_sha256's spec directly (the `crypto' module's helpers are not a dependency).  */
  ctx = grub_zalloc (md->contextsize);
  if (! ctx)
    return grub_errno;
  md->init (ctx);
  md->write (ctx, buf, size);
  md->final (ctx);
  grub_memcpy (digest, md->read (ctx), sizeof (digest));
  grub_free (ctx);
  for (i = 0; i < held_count; i++)
    {
      r = hnroot_seal_check_file (&held[i], which, digest, &matches, &problem);
      if (r != HNROOT_RESULT_OK)
	return hnroot_grub_ffi_error ("hnroot_seal_check_file", r);
      if (matches)
	return GRUB_ERR_NONE;
    }
  return grub_error (GRUB_ERR_BAD_SIGNATURE,
		     "hnroot: Secure Boot: this %s is not the one any held seal states "
		     "(%u sealed images seen); not loading it",
		     which == HNROOT_BOOT_FILE_KERNEL ? "kernel" : "initrd", held_count);
}

static struct grub_file_verifier hnroot_verifier =
  {
    .name = "hnroot_seal",
    .init = hnroot_verifier_init,
    .write = hnroot_verifier_write,
  };

void
hnroot_grub_verifier_register (void)
{
  grub_verifier_register (&hnroot_verifier);
}

void
hnroot_grub_verifier_unregister (void)
{
  grub_verifier_unregister (&hnroot_verifier);
}
