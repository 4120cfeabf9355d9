-- Argo CD health check for certmodel.io/CertifiedModel (argocd-cm key:
-- resource.customizations.health.certmodel.io_CertifiedModel). Lua 5.1; Argo CD sets `obj`.
--   Healthy:     Ready is True and was computed for the current spec generation.
--   Degraded:    Ready is False because the operator refused the target (missing, corrupt,
--                built on another base model, unsigned); the old CURRENT keeps serving.
--   Progressing: anything else (no status yet, status behind the spec, pointer moving,
--                serving pods converging, no target chosen yet).
local TERMINAL = {
  TargetRefused = true,
  TargetMissing = true,
  TargetCorrupt = true,
  TargetWrongBase = true,
  TargetUnsigned = true,
}

local hs = { status = "Progressing", message = "Waiting for the operator to report status" }
local status = obj.status
if status == nil or status.conditions == nil then
  return hs
end

local ready = nil
for _, condition in ipairs(status.conditions) do
  if condition.type == "Ready" then
    ready = condition
  end
end
if ready == nil then
  return hs
end

local generation = obj.metadata.generation
local observed = ready.observedGeneration
if observed == nil then
  observed = status.observedGeneration
end
local message = ready.message
if message == nil or message == "" then
  message = ready.reason or ""
end

if generation ~= nil and observed ~= nil and observed < generation then
  hs.message = "Waiting for the operator to observe generation " .. generation
  return hs
end
if ready.status == "True" then
  hs.status = "Healthy"
elseif ready.status == "False" and TERMINAL[ready.reason] then
  hs.status = "Degraded"
end
hs.message = message
return hs
