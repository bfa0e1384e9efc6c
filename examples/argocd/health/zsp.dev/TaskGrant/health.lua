-- Argo CD health of a zsp.dev TaskGrant (zsp-operator, examples/argocd).
-- A TaskGrant exists exactly while its privilege is live; the operator writes why it ends
-- (Ready False) before tearing it down, so an ending grant says how it ended.
local hs = {}

local function say(status, message)
  hs.status = status
  hs.message = message
  return hs
end

local ready = nil
if obj.status ~= nil and obj.status.conditions ~= nil then
  for _, c in ipairs(obj.status.conditions) do
    if c.type == "Ready" then
      ready = c
    end
  end
end

if ready == nil then
  return say("Progressing", "Issuing: creating the identity, Role, RoleBinding and token")
end
local text = ready.message or ""
if ready.status == "True" then
  if obj.metadata.deletionTimestamp ~= nil then
    return say("Progressing", "Revoking")
  end
  return say("Healthy", "Privilege live until " .. (obj.spec.expiresAt or "its TTL ends"))
end
if ready.reason == "Completed" or ready.reason == "Expired" then
  return say("Healthy", ready.reason .. ", being torn down: " .. text)
elseif ready.reason == "Revoked" then
  return say("Suspended", "Revoked, being torn down: " .. text)
elseif ready.reason == "Failed" then
  return say("Degraded", "Could not be issued: " .. text)
end
return say("Progressing", text)
