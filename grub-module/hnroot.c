/* hnroot.c - choose the root image to boot before the kernel loads.  */
/*
 *  Two verbs over one observation (observe_all): hostpart and the ESP (device.c) with their
 *  PARTUUIDs, hostpart's images with the kernel arguments each carries and the revert marker
 *  (observe.c), the host's kernel arguments, the boot-state file (bootstate.c).  Then the core
 *  (through hnroot-ffi) decides what to boot and composes the whole kernel command line of the
 *  chosen image and of its fallback.  `hnroot select' writes the boot state the core returns
 *  in place and hands the choice to grub.cfg through environment variables; `hnroot status'
 *  shows the same, every verdict and the boot state, and writes nothing.  This file decides
 *  nothing: the calling order is observe -> decide -> write state -> boot.
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
    {"defaults", 'd', 0,
     N_("The loader's default kernel arguments; an image or the host overrides them key by "
	"key."),
     N_("ARGS"), ARG_TYPE_STRING},
    {"defaults-file", 'f', 0,
     N_("The fleet's default kernel arguments, when this file is there: they replace "
	"--defaults."),
     N_("FILE"), ARG_TYPE_STRING},
    {"boot-limit", 'k', 0,
     N_("Boots of the committed image without reaching healthy before the other committed "
	"image boots (1-100, default 3)."),
     N_("K"), ARG_TYPE_STRING},
    {"wait-first", 'w', 0,
     N_("Seconds waited before the first boot once every committed image failed (default "
	"60)."),
     N_("SECONDS"), ARG_TYPE_STRING},
    {"wait-max", 'm', 0,
     N_("The longest wait in seconds; each further boot waits twice as long (default "
	"1800)."),
     N_("SECONDS"), ARG_TYPE_STRING},
    {"seal-keys", 'K', 0,
     N_("The trusted minisign keys sealed images are checked with, when this file is "
	"there."),
     N_("FILE"), ARG_TYPE_STRING},
    {"require-sealed-file", 'r', 0,
     N_("Only sealed images boot when this file is there."),
     N_("FILE"), ARG_TYPE_STRING},
    {"counting-file", 'C', 0,
     N_("The fleet's counting settings (tries, boot-limit, wait-first, wait-max), when this "
	"file is there; the options override it."),
     N_("FILE"), ARG_TYPE_STRING},
    {"menu-timeout-file", 'T', 0,
     N_("The fleet's menu countdown in seconds (0-600), when this file is there; select "
	"sets PREFIXmenu_timeout to it (default 2)."),
     N_("FILE"), ARG_TYPE_STRING},
    {0, 0, 0, 0, 0, 0}
  };

enum options
  {
    HNROOT_HOSTPART,
    HNROOT_ESP,
    HNROOT_TRIES,
    HNROOT_SET_PREFIX,
    HNROOT_DEFAULTS,
    HNROOT_DEFAULTS_FILE,
    HNROOT_BOOT_LIMIT,
    HNROOT_WAIT_FIRST,
    HNROOT_WAIT_MAX,
    HNROOT_SEAL_KEYS,
    HNROOT_REQUIRE_SEALED_FILE,
    HNROOT_COUNTING_FILE,
    HNROOT_MENU_TIMEOUT_FILE,
  };

#define USAGE "[--hostpart DEV] [--esp DEV] [--tries N] [--set-prefix P] [--defaults ARGS] " \
  "[--defaults-file FILE] [--boot-limit K] [--wait-first S] [--wait-max S] " \
  "[--seal-keys FILE] [--require-sealed-file FILE] [--counting-file FILE] " \
  "[--menu-timeout-file FILE]"

/* Called by hnroot-ffi if the core panics, which it is built not to do.  */
void hnroot_ffi_abort (void) __attribute__ ((noreturn));
void
hnroot_ffi_abort (void)
{
  grub_fatal ("hnroot: the decision core panicked; this is a bug in hnroot");
}

/* What one command saw: hostpart and the ESP, their PARTUUIDs, the images and the revert
   marker, the boot-state file, the kernel arguments of the host and of each image.  Allocated
   zeroed (the argument buffers are too large for GRUB's stack).  */
struct seen
{
  char *hostpart;
  char *esp;
  char *partuuid;
  char *esp_partuuid;
  char *state_path;
  grub_uint8_t tries;
  struct hnroot_observation obs;
  struct hnroot_state_file bootstate;
  struct hnroot_grub_args counting;
  struct hnroot_grub_args fleet_args;
  struct hnroot_grub_args host_args;
  struct hnroot_grub_args image_args[HNROOT_IMAGE_COUNT];
  struct hnroot_probe_ctx probe;
  struct hnroot_grub_seal_policy seal;
};

/* What the core decided, and its texts.  */
struct decided
{
  struct hnroot_decision decision;
  char message[HNROOT_TEXT_LEN];
  char record[HNROOT_TEXT_LEN];
  char cmdline[HNROOT_CMDLINE_LEN];
  char fallback_cmdline[HNROOT_CMDLINE_LEN];
};

static void
seen_free (struct seen *s)
{
  if (! s)
    return;
  hnroot_grub_state_close (&s->bootstate);
  hnroot_grub_probe_free (&s->probe);
  grub_free (s->seal.keys);
  grub_free (s->state_path);
  grub_free (s->esp_partuuid);
  grub_free (s->partuuid);
  grub_free (s->esp);
  grub_free (s->hostpart);
  grub_free (s);
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
    return hnroot_grub_ffi_error ("hnroot_uuid_format", r);
  return set_var (prefix, name, text);
}

/* Clear the variables of a boot, so that a failed command leaves none from an earlier one.  */
static void
clear_boot_vars (const char *prefix)
{
  static const char *names[] = { "image", "uuid", "cmdline", "wait", "fallback_image",
				 "fallback_uuid", "fallback_cmdline", "fallbacks",
				 "menu_timeout" };
  unsigned i;

  for (i = 0; i < ARRAY_SIZE (names); i++)
    set_var (prefix, names[i], "");
  grub_errno = GRUB_ERR_NONE;
}

/* The option OPT as whole seconds (1 to a day) into *OUT; unset leaves it 0 (the core's
   default).  */
static grub_err_t
parse_seconds (struct grub_arg_list *state, int opt, const char *name, grub_uint32_t *out)
{
  const char *text = state[opt].arg, *end;
  unsigned long n;

  if (! state[opt].set)
    return GRUB_ERR_NONE;
  n = grub_strtoul (text, &end, 10);
  if (grub_errno || end == text || *end || n < 1 || n > 86400)
    {
      grub_errno = GRUB_ERR_NONE;
      return grub_error (GRUB_ERR_BAD_ARGUMENT, N_("%s must be whole seconds from 1 to 86400, "
						   "not `%s'"), name, text);
    }
  *out = n;
  return GRUB_ERR_NONE;
}

/* The fleet's counting settings from PATH into S's observation, as the core reads them; what
   it made of the file goes on the console (a refused file: the defaults count).  */
static grub_err_t
read_counting (const char *path, struct seen *s)
{
  struct hnroot_args file;
  char line[256];

  if (hnroot_grub_read_args (path, &s->counting) != GRUB_ERR_NONE)
    return grub_errno;
  file.kind = s->counting.kind;
  file.bytes = s->counting.bytes;
  file.len = s->counting.len;
  if (hnroot_counting_read (&file, &s->obs, (grub_uint8_t *) line, sizeof (line))
      != HNROOT_RESULT_OK)
    return grub_error (GRUB_ERR_BUG, N_("hnroot: cannot read the counting settings"));
  if (*line)
    grub_printf ("hnroot: %s (%s)\n", line, path);
  return GRUB_ERR_NONE;
}

/* The fleet's menu countdown from PATH (NULL: not given, the core's default) into the
   variable PREFIXmenu_timeout, as the core reads the file; a refused file is named on the
   console (the default holds).  */
static grub_err_t
set_menu_timeout (const char *path, const char *prefix)
{
  struct hnroot_grub_args *read;
  struct hnroot_args file = { .kind = HNROOT_ARGS_ABSENT, .bytes = NULL, .len = 0 };
  grub_uint32_t seconds = 0;
  char line[256], text[16];
  hnroot_result r;

  read = grub_zalloc (sizeof (*read));
  if (! read)
    return grub_errno;
  if (path && hnroot_grub_read_args (path, read) != GRUB_ERR_NONE)
    {
      grub_free (read);
      return grub_errno;
    }
  if (path)
    {
      file.kind = read->kind;
      file.bytes = read->bytes;
      file.len = read->len;
    }
  r = hnroot_menu_timeout_read (&file, &seconds, (grub_uint8_t *) line, sizeof (line));
  grub_free (read);
  if (r != HNROOT_RESULT_OK)
    return hnroot_grub_ffi_error ("hnroot_menu_timeout_read", r);
  if (*line)
    grub_printf ("hnroot: %s (%s)\n", line, path);
  grub_snprintf (text, sizeof (text), "%u", (unsigned) seconds);
  return set_var (prefix, "menu_timeout", text);
}

/* Observe everything a decision needs, in the driver contract's order: hostpart and the ESP
   (by label or as given) and their PARTUUIDs, the images with their kernel arguments and the
   marker (with EVERY, each image's verdict is printed), the host's kernel arguments, the
   boot-state file.  */
static grub_err_t
observe_all (struct grub_arg_list *state, int every, struct seen **out)
{
  struct seen *s;
  char *path;

  *out = s = grub_zalloc (sizeof (*s));
  if (! s)
    return grub_errno;
  if (state[HNROOT_COUNTING_FILE].set
      && read_counting (state[HNROOT_COUNTING_FILE].arg, s) != GRUB_ERR_NONE)
    return grub_errno;
  s->tries = s->obs.tries ? s->obs.tries : HNROOT_DEFAULT_TRIES;
  if (state[HNROOT_TRIES].set)
    {
      const char *text = state[HNROOT_TRIES].arg;

      if (hnroot_parse_tries ((const grub_uint8_t *) text, grub_strlen (text), &s->tries)
	  != HNROOT_RESULT_OK)
	return grub_error (GRUB_ERR_BAD_ARGUMENT, N_("--tries must be a whole number from 1 "
						     "to %d, not `%s'"), HNROOT_MAX_TRIES, text);
    }
  s->obs.tries = s->tries;
  if (state[HNROOT_BOOT_LIMIT].set)
    {
      const char *text = state[HNROOT_BOOT_LIMIT].arg;

      /* The same range and words as --tries.  */
      if (hnroot_parse_tries ((const grub_uint8_t *) text, grub_strlen (text),
			      &s->obs.boot_limit) != HNROOT_RESULT_OK)
	return grub_error (GRUB_ERR_BAD_ARGUMENT, N_("--boot-limit must be a whole number from "
						     "1 to %d, not `%s'"), HNROOT_MAX_TRIES, text);
    }
  if (parse_seconds (state, HNROOT_WAIT_FIRST, "--wait-first", &s->obs.wait_first)
      || parse_seconds (state, HNROOT_WAIT_MAX, "--wait-max", &s->obs.wait_max))
    return grub_errno;
  if (hnroot_grub_probe_alloc (&s->probe) != GRUB_ERR_NONE)
    return grub_errno;
  s->hostpart = hnroot_grub_device (state[HNROOT_HOSTPART].set ? state[HNROOT_HOSTPART].arg
				    : NULL, HNROOT_HOSTPART_LABEL, "--hostpart", &s->probe);
  if (! s->hostpart)
    return grub_errno;
  s->esp = hnroot_grub_device (state[HNROOT_ESP].set ? state[HNROOT_ESP].arg : NULL,
			       HNROOT_ESP_LABEL, "--esp", &s->probe);
  if (! s->esp)
    return grub_errno;
  s->partuuid = hnroot_grub_part_uuid (s->hostpart, "hostpart", HNROOT_HOSTPART_LABEL,
				       &s->probe);
  if (! s->partuuid)
    return grub_errno;
  s->esp_partuuid = hnroot_grub_part_uuid (s->esp, "the ESP", HNROOT_ESP_LABEL, &s->probe);
  if (! s->esp_partuuid)
    return grub_errno;
  if (hnroot_grub_seal_policy_read (state[HNROOT_SEAL_KEYS].set
				    ? state[HNROOT_SEAL_KEYS].arg : NULL,
				    state[HNROOT_REQUIRE_SEALED_FILE].set
				    ? state[HNROOT_REQUIRE_SEALED_FILE].arg : NULL, &s->seal)
      != GRUB_ERR_NONE
      || hnroot_grub_observe (s->hostpart, &s->probe, &s->seal, &s->obs, s->image_args,
			      every) != GRUB_ERR_NONE)
    return grub_errno;
  if (state[HNROOT_DEFAULTS_FILE].set
      && hnroot_grub_read_args (state[HNROOT_DEFAULTS_FILE].arg, &s->fleet_args)
	 != GRUB_ERR_NONE)
    return grub_errno;
  path = grub_xasprintf ("(%s)/" HNROOT_HOST_ARGS_PATH, s->hostpart);
  if (! path)
    return grub_errno;
  hnroot_grub_read_args (path, &s->host_args);
  grub_free (path);
  if (grub_errno)
    return grub_errno;
  s->state_path = grub_xasprintf ("(%s)/" HNROOT_BOOTSTATE_PATH, s->esp);
  if (! s->state_path || hnroot_grub_state_read (s->state_path, &s->bootstate) != GRUB_ERR_NONE)
    return grub_errno;
  if (s->bootstate.kind == HNROOT_STATE_FILE_UNREADABLE)
    grub_printf ("hnroot: boot state unreadable (%s): deciding as for a corrupt one\n",
		 s->bootstate.why);
  return GRUB_ERR_NONE;
}

static struct hnroot_args
args_of (const struct hnroot_grub_args *a)
{
  struct hnroot_args c = { .kind = a->kind, .bytes = a->bytes, .len = a->len };
  return c;
}

/* Ask the core what to boot with which kernel command lines (DEFAULTS: the fleet's default
   arguments, or NULL), and print its message and record.  */
static grub_err_t
decide (const struct seen *s, const char *defaults, struct decided **out)
{
  struct hnroot_boot_parts parts;
  struct hnroot_decision_text text;
  struct decided *d;
  hnroot_result r;
  unsigned i;

  *out = d = grub_zalloc (sizeof (*d));
  if (! d)
    return grub_errno;
  grub_memset (&parts, 0, sizeof (parts));
  parts.hostpart_partuuid = (const grub_uint8_t *) s->partuuid;
  parts.esp_partuuid = (const grub_uint8_t *) s->esp_partuuid;
  if (defaults)
    {
      parts.defaults.kind = HNROOT_ARGS_READ;
      parts.defaults.bytes = (const grub_uint8_t *) defaults;
      parts.defaults.len = grub_strlen (defaults);
    }
  parts.fleet_defaults = args_of (&s->fleet_args);
  parts.host = args_of (&s->host_args);
  for (i = 0; i < HNROOT_IMAGE_COUNT; i++)
    parts.images[i] = args_of (&s->image_args[i]);
  text.message.bytes = (grub_uint8_t *) d->message;
  text.message.len = sizeof (d->message);
  text.record.bytes = (grub_uint8_t *) d->record;
  text.record.len = sizeof (d->record);
  text.cmdline.bytes = (grub_uint8_t *) d->cmdline;
  text.cmdline.len = sizeof (d->cmdline);
  text.fallback_cmdline.bytes = (grub_uint8_t *) d->fallback_cmdline;
  text.fallback_cmdline.len = sizeof (d->fallback_cmdline);
  r = hnroot_decide (&s->obs, s->bootstate.kind, s->bootstate.bytes, s->bootstate.len, &parts,
		     &d->decision, &text);
  if (r != HNROOT_RESULT_OK)
    return hnroot_grub_ffi_error ("hnroot_decide", r);
  grub_printf ("hnroot: %s\n", d->message);
  grub_printf ("hnroot: decision: %s\n", d->record);
  return GRUB_ERR_NONE;
}

/* Hand the choice to grub.cfg: the variables PREFIX... (see grub.cfg).  */
static grub_err_t
set_boot_vars (const char *prefix, const struct seen *s, const struct decided *d)
{
  const struct hnroot_decision *c = &d->decision;
  const char *reason = (const char *) hnroot_reason_code (c->reason);
  char tries[8], wait[16], *names;
  unsigned i;
  grub_err_t err;

  if (! reason)
    return grub_error (GRUB_ERR_BUG, N_("hnroot_reason_code: no name for reason %u"),
		       (unsigned) c->reason);
  grub_snprintf (tries, sizeof (tries), "%u", (unsigned) s->tries);
  grub_snprintf (wait, sizeof (wait), "%u", (unsigned) c->wait);
  if (set_var (prefix, "reason", reason)
      || set_var (prefix, "message", d->message)
      || set_var (prefix, "record", d->record)
      || set_var (prefix, "hostpart", s->hostpart)
      || set_var (prefix, "esp", s->esp)
      || set_var (prefix, "partuuid", s->partuuid)
      || set_var (prefix, "esp_partuuid", s->esp_partuuid)
      || set_var (prefix, "tries", tries)
      || set_var (prefix, "wait", wait))
    return grub_errno;
  if (c->reason == HNROOT_REASON_NOTHING_BOOTABLE)
    return grub_error (GRUB_ERR_FILE_NOT_FOUND, N_("no bootable image on (%s)"), s->hostpart);
  if (set_var (prefix, "image", (const char *) hnroot_image_file_name (c->image))
      || set_uuid_var (prefix, "uuid", &c->uuid)
      || set_var (prefix, "cmdline", d->cmdline))
    return grub_errno;
  names = grub_strdup ("");
  for (i = 0; names && i < c->fallback_count && i < ARRAY_SIZE (c->fallbacks); i++)
    {
      char *more = grub_xasprintf ("%s%s%s", names, i ? " " : "",
				   (const char *) hnroot_image_file_name (c->fallbacks[i]));
      grub_free (names);
      names = more;
    }
  if (! names)
    return grub_errno;
  err = set_var (prefix, "fallbacks", names);
  grub_free (names);
  if (err || c->fallback_count == 0)
    return err;
  if (set_var (prefix, "fallback_image", (const char *) hnroot_image_file_name (c->fallbacks[0]))
      || set_uuid_var (prefix, "fallback_uuid", &c->fallback_uuids[0])
      || set_var (prefix, "fallback_cmdline", d->fallback_cmdline))
    return grub_errno;
  return GRUB_ERR_NONE;
}

/* Write the boot state the decision returns; when it cannot be written, do what the core
   says (boot uncounted, and say so).  */
static grub_err_t
write_state (struct seen *s, const struct decided *d)
{
  const struct hnroot_decision *c = &d->decision;

  if (c->write.kind == HNROOT_STATE_NONE)
    return GRUB_ERR_NONE;
  if (hnroot_grub_state_write (&s->bootstate, &c->write) == GRUB_ERR_NONE)
    return GRUB_ERR_NONE;
  if (grub_errno == GRUB_ERR_OUT_OF_MEMORY || grub_errno == GRUB_ERR_BUG
      || c->unwritten != HNROOT_UNWRITTEN_BOOT_UNCOUNTED)
    return grub_errno;
  /* Deliberately handled, as the core says: the boot goes on.  */
  grub_printf ("hnroot: not recording this boot in %s: %s; booting %s without counting "
	       "this try\n", s->state_path, grub_errmsg,
	       (const char *) hnroot_image_file_name (c->image));
  grub_errno = GRUB_ERR_NONE;
  return GRUB_ERR_NONE;
}

/* What status shows besides the decision: the boot-state file, the PARTUUIDs, the module.  */
static grub_err_t
show_state (const struct seen *s, const struct decided *d)
{
  char description[HNROOT_MESSAGE_LEN];
  hnroot_result r;

  r = hnroot_bootstate_describe (s->bootstate.kind == HNROOT_STATE_FILE_READ
				 ? s->bootstate.bytes : NULL, s->bootstate.len,
				 (grub_uint8_t *) description, sizeof (description));
  if (r != HNROOT_RESULT_OK)
    return hnroot_grub_ffi_error ("hnroot_bootstate_describe", r);
  grub_printf ("hnroot: boot state %s: %s\n", s->state_path,
	       s->bootstate.kind == HNROOT_STATE_FILE_UNREADABLE ? s->bootstate.why
	       : description);
  grub_printf ("hnroot: hostpart (%s) PARTUUID %s, ESP (%s) PARTUUID %s, %u tries; module "
	       "built for Debian grub2 %s\n", s->hostpart, *s->partuuid ? s->partuuid : "-",
	       s->esp, *s->esp_partuuid ? s->esp_partuuid : "-", (unsigned) s->tries,
	       HNROOT_GRUB_VERSION);
  if (d->decision.write.kind != HNROOT_STATE_NONE)
    grub_printf ("hnroot: select would record a new boot state (status writes nothing)\n");
  return GRUB_ERR_NONE;
}

/* hnroot select: observe -> decide -> write state -> hand the boot to grub.cfg.  */
static grub_err_t
cmd_select (struct grub_arg_list *state, const char *prefix)
{
  struct seen *s = NULL;
  struct decided *d = NULL;
  grub_uint64_t started = grub_get_time_ms ();

  if (observe_all (state, 0, &s) == GRUB_ERR_NONE
      && decide (s, state[HNROOT_DEFAULTS].set ? state[HNROOT_DEFAULTS].arg : NULL, &d)
	 == GRUB_ERR_NONE
      && write_state (s, d) == GRUB_ERR_NONE
      && set_boot_vars (prefix, s, d) == GRUB_ERR_NONE)
    set_menu_timeout (state[HNROOT_MENU_TIMEOUT_FILE].set
		      ? state[HNROOT_MENU_TIMEOUT_FILE].arg : NULL, prefix);
  grub_dprintf ("hnroot", "select in %llu ms\n",
		(unsigned long long) (grub_get_time_ms () - started));
  grub_free (d);
  seen_free (s);
  return grub_errno;
}

/* hnroot status: the same observation and decision, every verdict and the boot state shown,
   nothing written.  */
static grub_err_t
cmd_status (struct grub_arg_list *state, const char *prefix)
{
  struct seen *s = NULL;
  struct decided *d = NULL;

  if (observe_all (state, 1, &s) == GRUB_ERR_NONE
      && decide (s, state[HNROOT_DEFAULTS].set ? state[HNROOT_DEFAULTS].arg : NULL, &d)
	 == GRUB_ERR_NONE
      && show_state (s, d) == GRUB_ERR_NONE)
    set_boot_vars (prefix, s, d);
  grub_free (d);
  seen_free (s);
  return grub_errno;
}

static grub_err_t
grub_cmd_hnroot (grub_extcmd_context_t ctxt, int argc, char **args)
{
  struct grub_arg_list *state = ctxt->state;
  const char *prefix = state[HNROOT_SET_PREFIX].set ? state[HNROOT_SET_PREFIX].arg : "hnroot_";

  clear_boot_vars (prefix);
  if (argc == 1 && grub_strcmp (args[0], "select") == 0)
    return cmd_select (state, prefix);
  if (argc == 1 && grub_strcmp (args[0], "status") == 0)
    return cmd_status (state, prefix);
  return grub_error (GRUB_ERR_BAD_ARGUMENT, N_("usage: hnroot select|status " USAGE));
}

static grub_extcmd_t cmd;

GRUB_MOD_INIT(hnroot)
{
  cmd = grub_register_extcmd ("hnroot", grub_cmd_hnroot, 0,
			      N_("select|status " USAGE),
			      N_("Choose the hnroot image to boot and record trial boots."),
			      options);
  hnroot_grub_verifier_register ();
}

GRUB_MOD_FINI(hnroot)
{
  hnroot_grub_verifier_unregister ();
  grub_unregister_extcmd (cmd);
}
