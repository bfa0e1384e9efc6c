-- Argo CD health of a zsp.dev AccessRequest (zsp-operator, examples/argocd).
-- A request is one-shot: once it ended normally it stays Healthy; a revoked one is
-- Suspended (someone must file a new request); a refused or failed one is Degraded.
local hs = {}

local function say(status, message)
  hs.status = status
  hs.message = message
  return hs
end

local function condition(status, kind)
  if status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local function message(status, kind, fallback)
  local c = condition(status, kind)
  if c ~= nil and c.message ~= nil and c.message ~= "" then
    return c.message
  end
  return fallback or ""
end

if obj.status == nil or obj.status.phase == nil then
  return say("Progressing", "Waiting for the zsp-operator to decide the request")
end

local status = obj.status
local generation = obj.metadata.generation
if generation ~= nil and status.observedGeneration ~= nil and generation ~= status.observedGeneration then
  return say("Progressing", string.format("Waiting for the zsp-operator to observe generation %d", generation))
end

local phase = status.phase
local ended = status.endReason or ""
if phase == "Pending" then
  return say("Progressing", "Awaiting approval: " .. message(status, "Approved", "waiting for approvers"))
elseif phase == "Approved" then
  return say("Progressing", "Approved; issuing the grant")
elseif phase == "Active" then
  return say("Healthy", "Privilege live until " .. (status.expiresAt or "its TTL ends"))
elseif phase == "Completed" then
  return say("Healthy", "Completed: " .. ended)
elseif phase == "Expired" then
  return say("Healthy", "Expired: " .. ended)
elseif phase == "Revoked" then
  return say("Suspended", "Revoked before the task was done: " .. ended .. "; file a new AccessRequest to ask again")
elseif phase == "Denied" then
  return say("Degraded", "Denied: " .. message(status, "Denied", ended))
elseif phase == "TimedOut" then
  return say("Degraded", "No approval in time: " .. message(status, "Denied", ended))
elseif phase == "Failed" then
  return say("Degraded", "Could not be issued: " .. message(status, "Ready", ended))
end
return say("Unknown", "Unknown phase " .. tostring(phase))
