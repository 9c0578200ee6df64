/* hnroot.c - choose the root image to boot before the kernel loads.  */
/*
 *  `hnroot select' finds hostpart and the ESP (device.c), observes hostpart's images and
 *  revert marker (observe.c) and reads the boot-state file (bootstate.c), asks hnroot-core
 *  (through hnroot-ffi) what to boot, writes the boot state the core returns in place, and
 *  hands the choice to grub.cfg through environment variables: above all `hnroot_cmdline',
 *  hnroot's whole part of the kernel command line, composed by the core.  `hnroot status'
 *  prints the same and writes nothing.  This file decides nothing: the calling order is
 *  observe -> decide -> write state -> boot.
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
#include <grub/command.h>
#include <grub/extcmd.h>
#include <grub/time.h>
#include <grub/i18n.h>

#include "hnroot-grub.h"

GRUB_MOD_LICENSE ("GPLv3+");

#ifndef HNROOT_GRUB_VERSION
#error "HNROOT_GRUB_VERSION (the Debian grub2 version built against) must be defined"
#endif

static const struct grub_arg_option options[] =
  {
    {"hostpart", 'p', 0,
     N_("Device holding the images (default: the filesystem labelled `" HNROOT_HOSTPART_LABEL
	"')."),
     N_("DEVICE"), ARG_TYPE_STRING},
    {"esp", 'e', 0,
     N_("Device holding /" HNROOT_BOOTSTATE_PATH " (default: the filesystem labelled `"
	HNROOT_ESP_LABEL "')."),
     N_("DEVICE"), ARG_TYPE_STRING},
    {"tries", 't', 0,
     N_("Boots a new image gets before it is rolled back (1-100, default 3)."),
     N_("N"), ARG_TYPE_STRING},
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

/* Set PREFIX+NAME to hnroot's part of the kernel command line for booting IMAGE (UUID).  */
static grub_err_t
set_cmdline_var (const char *prefix, const char *name, grub_uint8_t image,
		 const struct hnroot_uuid *uuid, const char *partuuid,
		 const char *esp_partuuid, grub_uint8_t tries, grub_uint8_t reason)
{
  char args[HNROOT_KERNEL_ARGS_LEN];
  hnroot_result r;

  r = hnroot_kernel_args (image, uuid, (const grub_uint8_t *) partuuid,
			  (const grub_uint8_t *) esp_partuuid, tries, reason,
			  (grub_uint8_t *) args, sizeof (args));
  if (r != HNROOT_RESULT_OK)
    return hnroot_grub_ffi_error ("hnroot_kernel_args", r);
  return set_var (prefix, name, args);
}

static grub_err_t
set_uuid_var (const char *prefix, const char *name, const struct hnroot_uuid *uuid)
{
  char text[HNROOT_UUID_TEXT_LEN];
  hnroot_result r;

  r = hnroot_uuid_format (uuid, (grub_uint8_t *) text, sizeof (text));
  if (r != HNROOT_RESULT_OK)
    return hnroot_grub_ffi_error ("hnroot_uuid_format", r);
  return set_var (prefix, name, text);
}

/* Clear the variables of a boot, so that a failed select leaves none from an earlier one.  */
static void
clear_boot_vars (const char *prefix)
{
  static const char *names[] = { "image", "uuid", "cmdline", "fallback_image",
				 "fallback_uuid", "fallback_cmdline", "fallbacks" };
  unsigned i;

  for (i = 0; i < ARRAY_SIZE (names); i++)
    set_var (prefix, names[i], "");
  grub_errno = GRUB_ERR_NONE;
}

/* select (WRITE != 0) and status (WRITE == 0).  */
static grub_err_t
hnroot_run (struct grub_arg_list *state, int write)
{
  const char *prefix = state[HNROOT_SET_PREFIX].set ? state[HNROOT_SET_PREFIX].arg : "hnroot_";
  char *hostpart = NULL, *esp = NULL, *partuuid = NULL, *esp_partuuid = NULL;
  char *state_path = NULL, *fallback_names = NULL;
  char message[HNROOT_MESSAGE_LEN], record[HNROOT_MESSAGE_LEN];
  char description[HNROOT_MESSAGE_LEN];
  char tries_text[8];
  const char *reason;
  struct hnroot_observation obs;
  struct hnroot_decision decision;
  struct hnroot_state_file bootstate;
  struct hnroot_probe_ctx probe;
  grub_uint64_t started = grub_get_time_ms ();
  hnroot_result r;
  unsigned i;

  grub_memset (&obs, 0, sizeof (obs));
  grub_memset (&decision, 0, sizeof (decision));
  grub_memset (&bootstate, 0, sizeof (bootstate));
  grub_memset (&probe, 0, sizeof (probe));
  clear_boot_vars (prefix);

  obs.tries = HNROOT_DEFAULT_TRIES;
  if (state[HNROOT_TRIES].set)
    {
      const char *text = state[HNROOT_TRIES].arg;

      r = hnroot_parse_tries ((const grub_uint8_t *) text, grub_strlen (text), &obs.tries);
      if (r != HNROOT_RESULT_OK)
	{
	  grub_error (GRUB_ERR_BAD_ARGUMENT, N_("--tries must be a whole number from 1 to %d, "
						"not `%s'"), HNROOT_MAX_TRIES, text);
	  goto done;
	}
    }
  grub_snprintf (tries_text, sizeof (tries_text), "%u", (unsigned) obs.tries);

  /* Observe.  */
  if (hnroot_grub_probe_alloc (&probe) != GRUB_ERR_NONE)
    goto done;
  hostpart = hnroot_grub_device (state[HNROOT_HOSTPART].set ? state[HNROOT_HOSTPART].arg
				 : NULL, HNROOT_HOSTPART_LABEL, "--hostpart", &probe);
  if (! hostpart)
    goto done;
  esp = hnroot_grub_device (state[HNROOT_ESP].set ? state[HNROOT_ESP].arg : NULL,
			    HNROOT_ESP_LABEL, "--esp", &probe);
  if (! esp)
    goto done;
  /* status shows every image's verdict; select only the images that do not boot.  */
  if (hnroot_grub_observe (hostpart, &probe, &obs, ! write) != GRUB_ERR_NONE)
    goto done;
  state_path = grub_xasprintf ("(%s)/" HNROOT_BOOTSTATE_PATH, esp);
  if (! state_path || hnroot_grub_state_read (state_path, &bootstate) != GRUB_ERR_NONE)
    goto done;
  if (bootstate.kind == HNROOT_STATE_FILE_UNREADABLE)
    grub_printf ("hnroot: boot state unreadable (%s): deciding as for a corrupt one\n",
		 bootstate.why);

  /* Decide.  */
  r = hnroot_decide (&obs, bootstate.kind, bootstate.bytes, bootstate.len, &decision,
		     (grub_uint8_t *) message, sizeof (message), (grub_uint8_t *) record,
		     sizeof (record));
  if (r != HNROOT_RESULT_OK)
    {
      hnroot_grub_ffi_error ("hnroot_decide", r);
      goto done;
    }
  grub_printf ("hnroot: %s\n", message);
  grub_printf ("hnroot: decision: %s\n", record);

  partuuid = hnroot_grub_part_uuid (hostpart, "hostpart", HNROOT_HOSTPART_LABEL, &probe);
  if (! partuuid)
    goto done;
  esp_partuuid = hnroot_grub_part_uuid (esp, "the ESP", HNROOT_ESP_LABEL, &probe);
  if (! esp_partuuid)
    goto done;

  /* Write state.  */
  if (! write)
    {
      r = hnroot_bootstate_describe (bootstate.kind == HNROOT_STATE_FILE_READ
				     ? bootstate.bytes : NULL, bootstate.len,
				     (grub_uint8_t *) description, sizeof (description));
      if (r != HNROOT_RESULT_OK)
	{
	  hnroot_grub_ffi_error ("hnroot_bootstate_describe", r);
	  goto done;
	}
      grub_printf ("hnroot: boot state %s: %s\n", state_path,
		   bootstate.kind == HNROOT_STATE_FILE_UNREADABLE ? bootstate.why : description);
      grub_printf ("hnroot: hostpart (%s) PARTUUID %s, ESP (%s) PARTUUID %s, %s tries; module "
		   "built for Debian grub2 %s\n", hostpart, *partuuid ? partuuid : "-", esp,
		   *esp_partuuid ? esp_partuuid : "-", tries_text, HNROOT_GRUB_VERSION);
      if (decision.write.kind != HNROOT_STATE_NONE)
	grub_printf ("hnroot: select would record a new boot state (status writes nothing)\n");
    }
  else if (decision.write.kind != HNROOT_STATE_NONE)
    {
      if (hnroot_grub_state_write (&bootstate, &decision.write) != GRUB_ERR_NONE)
	{
	  if (grub_errno == GRUB_ERR_OUT_OF_MEMORY || grub_errno == GRUB_ERR_BUG)
	    goto done;
	  /* Deliberately handled: GRUB cannot write here, the boot goes on.  */
	  grub_printf ("hnroot: not recording this boot in %s: %s; booting %s without counting "
		       "this try\n", state_path, grub_errmsg,
		       (const char *) hnroot_image_file_name (decision.image));
	  grub_errno = GRUB_ERR_NONE;
	}
    }

  /* Boot: hand the choice to grub.cfg.  */
  reason = (const char *) hnroot_reason_code (decision.reason);
  if (! reason)
    {
      grub_error (GRUB_ERR_BUG, N_("hnroot_reason_code: no name for reason %u"),
		  (unsigned) decision.reason);
      goto done;
    }
  if (set_var (prefix, "reason", reason)
      || set_var (prefix, "message", message)
      || set_var (prefix, "record", record)
      || set_var (prefix, "hostpart", hostpart)
      || set_var (prefix, "esp", esp)
      || set_var (prefix, "partuuid", partuuid)
      || set_var (prefix, "esp_partuuid", esp_partuuid)
      || set_var (prefix, "tries", tries_text))
    goto done;
  if (decision.reason == HNROOT_REASON_NOTHING_BOOTABLE)
    {
      grub_error (GRUB_ERR_FILE_NOT_FOUND, N_("no bootable image on (%s)"), hostpart);
      goto done;
    }
  if (set_var (prefix, "image", (const char *) hnroot_image_file_name (decision.image))
      || set_uuid_var (prefix, "uuid", &decision.uuid)
      || set_cmdline_var (prefix, "cmdline", decision.image, &decision.uuid, partuuid,
			  esp_partuuid, obs.tries, decision.reason))
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
  if (decision.fallback_count > 0
      && (set_var (prefix, "fallback_image",
		   (const char *) hnroot_image_file_name (decision.fallbacks[0]))
	  || set_uuid_var (prefix, "fallback_uuid", &decision.fallback_uuids[0])
	  || set_cmdline_var (prefix, "fallback_cmdline", decision.fallbacks[0],
			      &decision.fallback_uuids[0], partuuid, esp_partuuid, obs.tries,
			      HNROOT_REASON_NEXT_IMAGE)))
    goto done;

  grub_dprintf ("hnroot", "decided in %llu ms\n",
		(unsigned long long) (grub_get_time_ms () - started));

 done:
  hnroot_grub_state_close (&bootstate);
  hnroot_grub_probe_free (&probe);
  grub_free (fallback_names);
  grub_free (esp_partuuid);
  grub_free (partuuid);
  grub_free (state_path);
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
