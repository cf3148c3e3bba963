"""Writes of the prompt library: versions, labels, providers, and running a prompt.

Every function checks the caller's role first (user=None is the system, e.g. a build
step acting for the build). A model call happens outside any transaction; its run row
is written before the call and completed in one transaction after it.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from audit.services import record_action
from builds import cache
from builds.cache_key import digest
from buildsite import crypto
from buildsite.errors import Conflict, InvalidInput, NotFound, Problem
from buildsite.models import Project
from buildsite.roles import Role
from buildsite.selectors import require_role
from vault.rules import name_problem as secret_name_problem
from vault.selectors import has_secret, secret_value

from . import gates, netguard, selectors
from .models import LabelMove, PromptLabel, PromptRun, PromptTemplate, PromptVersion, ProviderConfig
from .pricing import cost_of
from .processing import process, repair_message
from .providers import (
    KINDS,
    ChatRequest,
    OfflineProvider,
    OpenAICompatibleProvider,
    Provider,
    ProviderError,
)
from .refs import LABEL_RE, LATEST, NAME_RE, PromptRef
from .rendering import render_messages, resolve_variables
from .spec import clean_version

CACHE_KEY_VERSION = "prompt-run-v1"
API_KEY_ENV_RE = re.compile(r"^[A-Z][A-Z0-9_]{0,90}_API_KEY$")
MAX_STORED_TEXT = 200_000


def _actor(user):
    return user if user is not None and user.is_authenticated else None


def _check(user, project: Project, role: Role) -> None:
    if user is not None:
        require_role(user=user, project=project, role=role)


# --- templates and versions -----------------------------------------------------------
def create_prompt(
    *, user, project: Project, name: str, body: dict[str, Any], description: str = ""
) -> PromptVersion:
    """A new prompt with its version 1."""
    _check(user, project, Role.EDITOR)
    if not NAME_RE.match(name or ""):
        raise InvalidInput(
            [Problem("use 1-80 lower-case letters, digits, '.', '_' and '-'", where="name")]
        )
    spec = _clean_for(project, body)
    try:
        with transaction.atomic():
            prompt = PromptTemplate.objects.create(
                project=project, name=name, description=description, created_by=_actor(user)
            )
            version = PromptVersion.objects.create(
                prompt=prompt, number=1, created_by=_actor(user), note="created", **spec
            )
            record_action(
                actor=user,
                project=project,
                action="prompt.create",
                target=f"prompt {name}",
                detail="version 1",
            )
            return version
    except IntegrityError as exc:
        raise Conflict(
            f"prompt '{name}' exists; add a version with POST .../prompts/{name}/versions"
        ) from exc


def add_version(
    *, user, project: Project, name: str, body: dict[str, Any], note: str = "", actor=None
) -> PromptVersion:
    """A new immutable version. `actor` records who, when user=None (the admin)."""
    _check(user, project, Role.EDITOR)
    prompt = selectors.get_prompt(project=project, name=name)
    spec = _clean_for(project, body)
    number = (prompt.versions.aggregate(n=Max("number"))["n"] or 0) + 1
    try:
        with transaction.atomic():
            version = PromptVersion.objects.create(
                prompt=prompt,
                number=number,
                created_by=_actor(user) or _actor(actor),
                note=note[:500],
                **spec,
            )
            record_action(
                actor=_actor(user) or _actor(actor),
                project=project,
                action="prompt.version",
                target=f"prompt {name}",
                detail=f"version {number}" + (f": {note[:200]}" if note else ""),
            )
            return version
    except IntegrityError as exc:
        raise Conflict("another version was saved at the same time; save again") from exc


def _clean_for(project: Project, body: dict[str, Any]) -> dict[str, Any]:
    spec = clean_version(body)
    if spec["provider"] not in selectors.provider_names(project=project):
        raise InvalidInput(
            [
                Problem(
                    f"provider '{spec['provider']}' is not configured in '{project.slug}' "
                    "(use 'offline' or add it under providers)",
                    where="provider",
                )
            ]
        )
    return spec


@transaction.atomic
def set_label(
    *,
    user,
    project: Project,
    name: str,
    label: str,
    number: int,
    actor=None,
    force: bool = False,
    reason: str = "",
) -> PromptLabel:
    """Point a label at a version. Registered label checks (prompts.gates: the evals
    app's gated labels) run first and may refuse the move or name the evaluation that
    justifies it; `force` skips them and needs a maintainer and a reason."""
    _check(user, project, Role.MAINTAINER if force else Role.EDITOR)
    who = _actor(user) or _actor(actor)
    reason = (reason or "").strip()
    if force and not reason:
        raise InvalidInput([Problem("a forced move needs a reason", where="reason")])
    if len(reason) > 500:
        raise InvalidInput([Problem("a reason has at most 500 characters", where="reason")])
    if label == LATEST:
        raise InvalidInput([Problem("'latest' always means the newest version", where="label")])
    if not LABEL_RE.match(label or ""):
        raise InvalidInput(
            [Problem("use 1-50 lower-case letters, digits, '.', '_' and '-'", where="label")]
        )
    prompt = selectors.get_prompt(project=project, name=name)
    version = selectors.get_version(prompt=prompt, number=number)
    current = PromptLabel.objects.select_for_update().filter(prompt=prompt, name=label).first()
    previous = current.version.number if current else None
    evaluation = (
        gates.check_label_move(prompt=prompt, label=label, version=version, force=force)
        if previous != number
        else None
    )
    if current is None:
        current = PromptLabel.objects.create(
            prompt=prompt, name=label, version=version, updated_by=who
        )
    elif previous != number:
        current.version = version
        current.updated_by = who
        current.save(update_fields=["version", "updated_by", "updated_at"])
    if previous != number:
        LabelMove.objects.create(
            prompt=prompt,
            label=label,
            from_number=previous,
            to_number=number,
            moved_by=who,
            evaluation_id=evaluation,
            forced=force,
            reason=reason if force else "",
        )
        detail = (
            f"{label} v{previous} → v{number}"
            if previous is not None
            else f"{label} → v{number} (new label)"
        )
        if evaluation is not None:
            detail += f", evaluation {evaluation}"
        if force:
            detail += f", forced: {reason}"
        record_action(
            actor=who, project=project, action="label.move", target=f"prompt {name}", detail=detail
        )
        _label_moved_event(project, prompt.name, label, previous, number)
    return current


def _label_moved_event(
    project: Project, prompt: str, label: str, previous: int | None, number: int
) -> None:
    """An outbox event in the move's transaction: notifications (and live pages) read it."""
    from tasks.models import Event
    from tasks.services import record_event

    record_event(
        project_id=project.id,
        type=Event.Type.LABEL_MOVED,
        data={"prompt": prompt, "label": label, "version": number, "previous_version": previous},
    )


@transaction.atomic
def remove_label(*, user, project: Project, name: str, label: str, actor=None) -> None:
    _check(user, project, Role.EDITOR)
    prompt = selectors.get_prompt(project=project, name=name)
    current = (
        PromptLabel.objects.filter(prompt=prompt, name=label).select_related("version").first()
    )
    if current is None:
        raise NotFound(f"Prompt '{name}' has no label '{label}'.")
    LabelMove.objects.create(
        prompt=prompt,
        label=label,
        from_number=current.version.number,
        to_number=None,
        moved_by=_actor(user) or _actor(actor),
    )
    record_action(
        actor=_actor(user) or _actor(actor),
        project=project,
        action="label.remove",
        target=f"prompt {name}",
        detail=f"{label} (was v{current.version.number})",
    )
    current.delete()


def render(
    *, user, project: Project, ref: PromptRef, variables: dict[str, Any] | None
) -> tuple[PromptVersion, list[dict[str, str]]]:
    """The messages a version produces with these variables (nothing is called)."""
    _check(user, project, Role.EDITOR)
    prompt = selectors.get_prompt(project=project, name=ref.name)
    version = selectors.resolve_version(prompt=prompt, ref=ref)
    return version, _render(version, variables)


def _render(version: PromptVersion, variables: dict[str, Any] | None) -> list[dict[str, str]]:
    return render_messages(
        template=version.template,
        messages=version.messages or None,
        declared=version.variables,
        given=variables,
    )


# --- providers ----------------------------------------------------------------------------
def save_provider(
    *,
    user,
    project: Project,
    name: str,
    kind: str,
    base_url: str = "",
    model: str = "",
    api_key_env: str = "",
    api_key: str | None = None,
    price_in: Any = None,
    price_out: Any = None,
    timeout: float | None = None,
    max_retries: int | None = None,
    resolver: netguard.Resolver = netguard.resolve,
    api_key_secret: str = "",
) -> tuple[ProviderConfig, bool]:
    """Create or replace a provider configuration; (config, created). Maintainers only:
    this sets the URL the server will call and which key it sends there.
    `api_key=None` keeps a stored key, `""` removes it; `api_key_secret` names a project
    secret to send instead (vault), and replaces a stored key."""
    _check(user, project, Role.MAINTAINER)
    base_url, prices = check_provider(
        project=project,
        name=name,
        kind=kind,
        base_url=base_url,
        model=model,
        api_key_env=api_key_env,
        api_key=api_key,
        price_in=price_in,
        price_out=price_out,
        timeout=timeout,
        max_retries=max_retries,
        resolver=resolver,
        api_key_secret=api_key_secret,
    )
    with transaction.atomic():
        config = (
            ProviderConfig.objects.select_for_update().filter(project=project, name=name).first()
        )
        created = config is None
        if created:
            config = ProviderConfig(project=project, name=name)
        config.kind = kind
        config.base_url = base_url if kind == "openai" else ""
        config.model = model or ""
        config.api_key_env = api_key_env or ""
        config.api_key_secret = api_key_secret or ""
        if api_key_env or api_key_secret or kind == "offline" or api_key == "":
            config.api_key_encrypted = ""
        elif api_key:
            config.api_key_encrypted = crypto.encrypt(api_key)
        config.price_in_per_mtok, config.price_out_per_mtok = prices
        config.timeout_seconds = timeout if timeout is not None else config.timeout_seconds
        config.max_retries = max_retries if max_retries is not None else config.max_retries
        config.updated_by = _actor(user)
        config.save()
        # What it is and where its key comes from; never the key itself.
        key = (
            f"key from secret {config.api_key_secret}"
            if config.api_key_secret
            else f"key from env {config.api_key_env}"
            if config.api_key_env
            else "stored key"
            if config.api_key_encrypted
            else "no key"
        )
        record_action(
            actor=user,
            project=project,
            action="provider.save",
            target=f"provider {name}",
            detail=f"{'created' if created else 'updated'}: {kind}"
            + (f", model {config.model}" if config.model else "")
            + f", {key}",
        )
    return config, created


def check_provider(
    *,
    project: Project,
    name: str,
    kind: str,
    base_url: str = "",
    model: str = "",
    api_key_env: str = "",
    api_key: str | None = None,
    price_in: Any = None,
    price_out: Any = None,
    timeout: float | None = None,
    max_retries: int | None = None,
    resolver: netguard.Resolver = netguard.resolve,
    api_key_secret: str = "",
) -> tuple[str, tuple[Decimal | None, Decimal | None]]:
    """Validate a provider configuration: (normalized base_url, prices) or InvalidInput."""
    problems: list[Problem] = []
    if not NAME_RE.match(name or ""):
        problems.append(Problem("use lower-case letters, digits, '.', '_' and '-'", where="name"))
    if name == selectors.BUILTIN_OFFLINE:
        problems.append(Problem("'offline' is the built-in offline provider", where="name"))
    if kind not in KINDS:
        problems.append(Problem(f"kind must be one of {', '.join(KINDS)}", where="kind"))
    if kind == "openai":
        try:
            base_url = netguard.check_url(
                base_url, allow_private=private_urls_allowed(), resolver=resolver
            )
        except InvalidInput as exc:
            problems.extend(exc.problems)
    elif base_url:
        problems.append(Problem("an offline provider has no base_url", where="base_url"))
    if api_key_env and not API_KEY_ENV_RE.match(api_key_env):
        problems.append(
            Problem(
                "api_key_env must name a variable ending in _API_KEY (e.g. OPENAI_API_KEY); "
                "other server variables are never sent",
                where="api_key_env",
            )
        )
    elif api_key_env and not env_key_allowed(project, api_key_env):
        problems.append(Problem(env_key_refused(project, api_key_env), where="api_key_env"))
    if api_key_env and api_key:
        problems.append(Problem("give api_key_env or api_key, not both", where="api_key"))
    if api_key_secret:
        problems.extend(_secret_key_problems(project, api_key_secret, api_key_env, api_key))
    if kind == "offline" and (api_key_env or api_key or api_key_secret):
        problems.append(Problem("an offline provider needs no key", where="api_key"))
    if len(model or "") > 200:
        problems.append(Problem("at most 200 characters", where="model"))
    prices = _prices(price_in, price_out, problems)
    if timeout is not None and not (1 <= timeout <= 600):
        problems.append(Problem("timeout must be 1 to 600 seconds", where="timeout"))
    if max_retries is not None and not (0 <= max_retries <= 10):
        problems.append(Problem("max_retries must be 0 to 10", where="max_retries"))
    if problems:
        raise InvalidInput(problems)
    return base_url, prices


def _secret_key_problems(
    project: Project, name: str, api_key_env: str, api_key: str | None
) -> list[Problem]:
    """A key from a project secret: a valid name of a secret that exists now (it may be
    deleted later; runs then fail saying so), and the only key given."""
    if message := secret_name_problem(name):
        return [Problem(message, where="api_key_secret")]
    problems = []
    if api_key_env or api_key:
        problems.append(
            Problem("give one of api_key_secret, api_key_env and api_key", where="api_key_secret")
        )
    if not has_secret(project=project, name=name):
        problems.append(
            Problem(
                f"no secret '{name}' in '{project.slug}': set it first (Secrets page or "
                f"PUT /api/projects/{project.slug}/secrets/{name})",
                where="api_key_secret",
            )
        )
    return problems


def _prices(price_in: Any, price_out: Any, problems: list[Problem]):
    if price_in is None and price_out is None:
        return None, None
    try:
        prices = (Decimal(str(price_in)), Decimal(str(price_out)))
    except InvalidOperation:
        prices = None
    if prices is None or any(not p.is_finite() or p < 0 for p in prices):
        problems.append(
            Problem("give both price_in and price_out (USD per 1M tokens, >= 0)", where="price_in")
        )
        return None, None
    return prices


@transaction.atomic
def delete_provider(*, user, project: Project, name: str) -> None:
    _check(user, project, Role.MAINTAINER)
    deleted, _ = ProviderConfig.objects.filter(project=project, name=name).delete()
    if not deleted:
        raise NotFound(f"No provider '{name}' in '{project.slug}'.")
    record_action(actor=user, project=project, action="provider.delete", target=f"provider {name}")


def private_urls_allowed() -> bool:
    """BUILDSITE_ALLOW_PRIVATE_URLS: may providers call loopback and private addresses?"""
    return bool(settings.BUILDSITE.get("ALLOW_PRIVATE_URLS", False))


def env_key_allowed(project: Project, name: str) -> bool:
    """May this project's providers send the server's environment variable `name`?
    Only when BUILDSITE_PROVIDER_ENV_KEYS lists the project (or `*`) for it. Whether the
    variable is set is not looked at, so refusals cannot tell which variables exist."""
    allowed = settings.BUILDSITE.get("PROVIDER_ENV_KEYS", {}).get(name, ())
    return "*" in allowed or project.slug in allowed


def env_key_refused(project: Project, name: str) -> str:
    return (
        f"project '{project.slug}' may not use the server's {name}: store the key in the "
        "provider (api_key), or ask the operator to allow it in BUILDSITE_PROVIDER_ENV_KEYS"
    )


def client_for(config: ProviderConfig, *, sleep: Callable[[float], None] | None = None) -> Provider:
    """The provider client for a configuration; ProviderError when its key is unusable."""
    if config.kind == "offline":
        return OfflineProvider()
    key = ""
    if config.api_key_secret:
        try:
            key = secret_value(project=config.project, name=config.api_key_secret)
        except NotFound:
            raise ProviderError(
                f"the project secret {config.api_key_secret} holding the API key is not set",
                "config",
            ) from None
        except crypto.SecretUnreadable as exc:
            raise ProviderError(f"secret {config.api_key_secret}: {exc}", "config") from None
    elif config.api_key_encrypted:
        try:
            key = crypto.decrypt(config.api_key_encrypted)
        except crypto.SecretUnreadable as exc:
            raise ProviderError(str(exc), "config") from None
    elif config.api_key_env:
        if not env_key_allowed(config.project, config.api_key_env):
            raise ProviderError(env_key_refused(config.project, config.api_key_env), "config")
        key = os.environ.get(config.api_key_env, "")
        if not key:  # said only to projects allowed to use the variable
            raise ProviderError(
                f"environment variable {config.api_key_env} is not set for this server", "config"
            )
    return OpenAICompatibleProvider(
        base_url=config.base_url,
        api_key=key,
        max_retries=config.max_retries,
        sleep=sleep or time.sleep,
        allow_private=private_urls_allowed(),
    )


# --- runs ---------------------------------------------------------------------------------
def run_cache_key(
    *, version: PromptVersion, config: ProviderConfig, model: str, messages: list[dict]
) -> str:
    """Content address of a call: the rendered prompt, the model settings, the provider."""
    return digest(
        {
            "v": CACHE_KEY_VERSION,
            "messages": messages,
            "provider": {"name": config.name, "kind": config.kind, "base_url": config.base_url},
            "model": model,
            "temperature": version.temperature,
            "max_tokens": version.max_tokens,
            "response_format": version.response_format,
            "response_schema": version.response_schema,
            "max_repairs": version.max_repairs,
        }
    )


def run_prompt(
    *,
    user,
    project: Project,
    ref: PromptRef,
    variables: dict[str, Any] | None,
    cache_mode: bool | None = None,
    timeout: float | None = None,
    task=None,
    actor=None,
    sleep: Callable[[float], None] | None = None,
    provider: str | None = None,
    model: str | None = None,
) -> PromptRun:
    """Render, call the provider (or the cache), process the answer, repair if needed,
    and store the run. Bad input (unknown prompt, missing variable) raises; anything
    that goes wrong with the model ends in a stored failed run.

    `cache_mode`: None = on when temperature is 0; True/False forces it.
    `provider` / `model` override the version's (an evaluation on another model); with
    another provider the version's model is not used, since it names a model of its
    own provider: the given model, else that provider's default."""
    _check(user, project, Role.EDITOR)
    prompt = selectors.get_prompt(project=project, name=ref.name)
    version = selectors.resolve_version(prompt=prompt, ref=ref)
    values = resolve_variables(version.variables, variables)
    messages = _render(version, values)
    config = selectors.provider_config(project=project, name=provider or version.provider)
    if config.api_key_env and not env_key_allowed(project, config.api_key_env):
        # saved before the operator withdrew the permission (or by hand): refused
        # before anything is stored or looked up in the cache
        raise InvalidInput(
            [Problem(env_key_refused(project, config.api_key_env), where="provider")]
        )
    own_model = version.model if not provider or provider == version.provider else ""
    model = model or own_model or config.model or ("offline" if config.kind == "offline" else "")
    if not model:
        raise InvalidInput(
            [
                Problem(
                    f"no model: set one on the version or on provider '{config.name}'",
                    where="model",
                )
            ]
        )
    use_cache = (version.temperature == 0) if cache_mode is None else cache_mode
    key = run_cache_key(version=version, config=config, model=model, messages=messages)
    run = PromptRun.objects.create(
        project=project,
        version=version,
        ref=str(ref),
        provider=config.name,
        provider_kind=config.kind,
        model=model,
        variables=values,
        rendered=messages,
        cache_key=key,
        task=task,
        created_by=_actor(user) or _actor(actor),
    )
    hit = cache.lookup(project_id=project.id, key=key) if use_cache else None
    if hit is not None:
        _finish_from_cache(run, hit)
        return run
    _call_and_finish(
        run,
        version=version,
        config=config,
        messages=messages,
        timeout=timeout if timeout is not None else config.timeout_seconds,
        sleep=sleep,
        store_in_cache=use_cache,
    )
    return run


def _finish_from_cache(run: PromptRun, hit: dict[str, Any]) -> None:
    run.status = PromptRun.Status.SUCCEEDED
    run.cached = True
    run.output = hit.get("output", "")
    run.parsed = hit.get("parsed")
    run.raw_response = hit.get("raw_response", "")
    run.cost_usd = Decimal("0")
    run.attempts = [{"n": 0, "cache_hit": True, "source_run": hit.get("run")}]
    run.finished_at = timezone.now()
    run.save()


def _call_and_finish(
    run: PromptRun,
    *,
    version: PromptVersion,
    config: ProviderConfig,
    messages: list[dict],
    timeout: float,
    sleep: Callable[[float], None] | None,
    store_in_cache: bool,
) -> None:
    started = time.monotonic()
    deadline = started + timeout
    attempts: list[dict[str, Any]] = []
    conversation = list(messages)
    processed = None
    error = ""
    try:
        client = client_for(config, sleep=sleep)
    except ProviderError as exc:
        client, error = None, f"provider '{config.name}': {exc}"
        attempts.append({"n": 1, "error": str(exc), "kind": exc.kind})
    for n in range(1, version.max_repairs + 2):
        if client is None:
            break
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            error = f"time limit of {timeout:g}s used up before attempt {n}"
            break
        t0 = time.monotonic()
        request = ChatRequest(
            messages=conversation,
            model=run.model,
            temperature=version.temperature,
            max_tokens=version.max_tokens,
            response_format=version.response_format,
            response_schema=version.response_schema,
            timeout=remaining,
        )
        try:
            result = client.complete(request)
        except ProviderError as exc:
            attempts.append(
                {
                    "n": n,
                    "error": str(exc),
                    "kind": exc.kind,
                    "retries": exc.retries,
                    "body": exc.raw[:2000],
                    "latency_ms": _ms(t0),
                }
            )
            error = f"provider error: {exc}"
            break
        run.tokens_in += result.tokens_in
        run.tokens_out += result.tokens_out
        run.raw_response = result.text[:MAX_STORED_TEXT]
        processed = process(
            result.text, response_format=version.response_format, schema=version.response_schema
        )
        attempts.append(
            {
                "n": n,
                "response": result.text[:20_000],
                "error": processed.error,
                "tokens_in": result.tokens_in,
                "tokens_out": result.tokens_out,
                "retries": result.retries,
                "latency_ms": _ms(t0),
                "repair": n > 1,
            }
        )
        if processed.ok:
            error = ""
            break
        error = f"invalid response after {n} attempt(s): {processed.error}"
        conversation = [
            *conversation,
            {"role": "assistant", "content": result.text},
            repair_message(processed.error, version.response_schema),
        ]
    run.attempts = attempts
    run.latency_ms = _ms(started)
    override = (config.price_in_per_mtok, config.price_out_per_mtok)
    run.cost_usd = (
        Decimal("0")
        if config.kind == "offline"
        else cost_of(
            model=run.model, tokens_in=run.tokens_in, tokens_out=run.tokens_out, override=override
        )
    )
    run.finished_at = timezone.now()
    ok = processed is not None and processed.ok and not error
    with transaction.atomic():
        if ok:
            run.status = PromptRun.Status.SUCCEEDED
            run.output = processed.output[:MAX_STORED_TEXT]
            run.parsed = processed.parsed
            run.error = ""
        else:
            run.status = PromptRun.Status.FAILED
            run.output = processed.output[:MAX_STORED_TEXT] if processed else ""
            run.error = error or "no answer"
        run.save()
        if ok and store_in_cache:
            cache.store(
                project_id=run.project_id,
                key=run.cache_key,
                task_name=f"prompt:{run.version.prompt.name}"[:100],
                outputs={
                    "output": run.output,
                    "parsed": run.parsed,
                    "raw_response": run.raw_response,
                    "run": run.id,
                },
            )


def _ms(since: float) -> int:
    return int((time.monotonic() - since) * 1000)
