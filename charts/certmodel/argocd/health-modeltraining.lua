-- Argo CD health check for certmodel.io/ModelTraining (argocd-cm key:
-- resource.customizations.health.certmodel.io_ModelTraining). Lua 5.1; Argo CD sets `obj`.
--   Healthy:     status.phase is Succeeded (the version is certified, or existed already).
--   Degraded:    status.phase is Failed; status.message says what went wrong.
--   Progressing: Pending, Running, or no status yet.
local hs = { status = "Progressing", message = "Waiting for the operator to report status" }
local status = obj.status
if status == nil or status.phase == nil then
  return hs
end

if status.phase == "Succeeded" then
  hs.status = "Healthy"
elseif status.phase == "Failed" then
  hs.status = "Degraded"
end

local message = status.message
if (message == nil or message == "") and status.progress ~= nil then
  message = status.progress.summary
end
if message == nil or message == "" then
  message = status.phase
end
hs.message = message
return hs
