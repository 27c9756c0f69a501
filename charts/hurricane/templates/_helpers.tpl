{{/*
Names, labels, images and the shared pieces of every pod. Every object name of the chart comes
from "hurricane.fullname" or "hurricane.componentName"; nothing names a namespace by hand.
*/}}

{{- define "hurricane.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "hurricane.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* "<fullname>-<suffix>", a DNS label. Call with (dict "ctx" $ "suffix" "api"). */}}
{{- define "hurricane.componentName" -}}
{{- printf "%s-%s" (include "hurricane.fullname" .ctx) .suffix | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "hurricane.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Selector labels of one component. Call with (dict "ctx" $ "component" "api"). */}}
{{- define "hurricane.selectorLabels" -}}
app.kubernetes.io/name: {{ include "hurricane.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Every label of one component's objects. Call with (dict "ctx" $ "component" "api"). */}}
{{- define "hurricane.labels" -}}
helm.sh/chart: {{ include "hurricane.chart" .ctx }}
{{ include "hurricane.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: hurricane-nas
{{- end -}}

{{/*
A hurricane image reference: [registry/]repository:tag, the tag defaulting to
images.tag, then the chart's appVersion. Call with (dict "ctx" $ "image" "trainer").
The pods and HURRICANE_K8S_TRAINER_IMAGE/PROFILER_IMAGE use this one helper.
*/}}
{{- define "hurricane.image" -}}
{{- $images := .ctx.Values.images -}}
{{- $img := index $images .image -}}
{{- $tag := $img.tag | default $images.tag | default .ctx.Chart.AppVersion | toString -}}
{{- if $images.registry -}}
{{- printf "%s/%s:%s" (trimSuffix "/" $images.registry) $img.repository $tag -}}
{{- else -}}
{{- printf "%s:%s" $img.repository $tag -}}
{{- end -}}
{{- end -}}

{{/* A third-party image ({repository, tag}) as repository:tag. */}}
{{- define "hurricane.thirdPartyImage" -}}
{{- printf "%s:%s" .repository (toString .tag) -}}
{{- end -}}

{{/* imagePullSecrets of every pod; empty when there are none. */}}
{{- define "hurricane.imagePullSecrets" -}}
{{- with .Values.images.pullSecrets -}}
imagePullSecrets:
{{- range . }}
  - name: {{ . }}
{{- end }}
{{- end -}}
{{- end -}}

{{/* Object names shared by several templates (and rendered into the settings). */}}
{{- define "hurricane.settingsName" -}}
{{- include "hurricane.componentName" (dict "ctx" . "suffix" "settings") -}}
{{- end -}}

{{- define "hurricane.s3SecretName" -}}
{{- .Values.s3.existingSecret | default (include "hurricane.componentName" (dict "ctx" . "suffix" "s3")) -}}
{{- end -}}

{{- define "hurricane.authSecretName" -}}
{{- .Values.auth.existingSecret | default (include "hurricane.componentName" (dict "ctx" . "suffix" "auth")) -}}
{{- end -}}

{{- define "hurricane.workerServiceAccountName" -}}
{{- .Values.serviceAccount.worker.name | default (include "hurricane.componentName" (dict "ctx" . "suffix" "worker")) -}}
{{- end -}}

{{- define "hurricane.jobServiceAccountName" -}}
{{- .Values.serviceAccount.job.name | default (include "hurricane.componentName" (dict "ctx" . "suffix" "job")) -}}
{{- end -}}

{{- define "hurricane.apiServiceName" -}}
{{- include "hurricane.componentName" (dict "ctx" . "suffix" "api") -}}
{{- end -}}

{{- define "hurricane.redisName" -}}
{{- include "hurricane.componentName" (dict "ctx" . "suffix" "redis") -}}
{{- end -}}

{{- define "hurricane.minioName" -}}
{{- include "hurricane.componentName" (dict "ctx" . "suffix" "minio") -}}
{{- end -}}

{{/* Where the tokens Secret is mounted in the API pods (HURRICANE_TOKENS_FILE). */}}
{{- define "hurricane.tokensDir" -}}/etc/hurricane/tokens{{- end -}}

{{/*
The Kubernetes API calls of the executor (hurricane.operator), and nothing more: the workers'
Role. tests/test_chart.py compares these rules with the calls the executor records; change
both together.
*/}}
{{- define "hurricane.executorRules" -}}
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["create", "get", "delete"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list"]
- apiGroups: [""]
  resources: ["pods/log"]
  verbs: ["get"]
{{- if eq .Values.training.backend "trainjob" }}
- apiGroups: ["trainer.kubeflow.org"]
  resources: ["trainjobs"]
  verbs: ["create", "get", "delete"]
{{- else }}
- apiGroups: [""]
  resources: ["services"]
  verbs: ["create", "get", "delete"]
{{- end }}
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["create", "get", "delete"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["list"]
{{- if .Values.kueue.queue }}
- apiGroups: ["kueue.x-k8s.io"]
  resources: ["workloads"]
  verbs: ["list"]
{{- end }}
{{- end -}}

{{/*
Checks of values the schema cannot express (they depend on each other). Rendered by the
settings ConfigMap, so every install and upgrade runs them.
*/}}
{{- define "hurricane.validate" -}}
{{- $v := .Values -}}
{{- if not $v.s3.existingSecret -}}
{{- if not $v.s3.accessKey -}}
{{- fail "s3.accessKey is empty: set s3.accessKey and s3.secretKey, or name a Secret with HURRICANE_S3_ACCESS_KEY and HURRICANE_S3_SECRET_KEY in s3.existingSecret" -}}
{{- end -}}
{{- if not $v.s3.secretKey -}}
{{- fail "s3.secretKey is empty: set a real secret (e.g. --set s3.secretKey=$(openssl rand -hex 20)), or name a Secret with HURRICANE_S3_ACCESS_KEY and HURRICANE_S3_SECRET_KEY in s3.existingSecret" -}}
{{- end -}}
{{- if lt (len $v.s3.secretKey) 8 -}}
{{- fail "s3.secretKey is shorter than 8 characters (MinIO's minimum)" -}}
{{- end -}}
{{- end -}}
{{- if and $v.kueue.priorityClass (not $v.kueue.queue) -}}
{{- fail "kueue.priorityClass is set without kueue.queue: Kueue only admits jobs that name a LocalQueue" -}}
{{- end -}}
{{- if and $v.minio.enabled $v.s3.endpoint -}}
{{- fail "s3.endpoint is set while minio.enabled is true: set minio.enabled=false to use an external S3 endpoint, or clear s3.endpoint to use the bundled MinIO" -}}
{{- end -}}
{{- if and (not $v.minio.enabled) (not $v.s3.endpoint) -}}
{{- fail "s3.endpoint is empty while minio.enabled is false: name the external S3 endpoint (https://...)" -}}
{{- end -}}
{{- if and $v.redis.enabled $v.redis.external.url -}}
{{- fail "redis.external.url is set while redis.enabled is true: set redis.enabled=false to use an external Redis, or clear redis.external.url" -}}
{{- end -}}
{{- if and (not $v.redis.enabled) (not $v.redis.external.url) -}}
{{- fail "redis.external.url is empty while redis.enabled is false: give the Redis URL (redis://host:6379/0)" -}}
{{- end -}}
{{- if and (not $v.serviceAccount.worker.create) (not $v.serviceAccount.worker.name) -}}
{{- fail "serviceAccount.worker.name is empty while serviceAccount.worker.create is false: name the existing ServiceAccount" -}}
{{- end -}}
{{- if and (not $v.serviceAccount.job.create) (not $v.serviceAccount.job.name) -}}
{{- fail "serviceAccount.job.name is empty while serviceAccount.job.create is false: name the existing ServiceAccount" -}}
{{- end -}}
{{- $pdb := $v.api.pdb -}}
{{- if and $pdb.enabled (not (kindIs "string" $pdb.minAvailable)) (ge (int64 $pdb.minAvailable) (int64 $v.api.replicas)) -}}
{{- fail (printf "api.pdb.minAvailable (%d) must be below api.replicas (%d), or no API pod could ever be evicted (node drains would hang)" (int64 $pdb.minAvailable) (int64 $v.api.replicas)) -}}
{{- end -}}
{{- range $key := list "HURRICANE_S3_ACCESS_KEY" "HURRICANE_S3_SECRET_KEY" -}}
{{- if hasKey $v.settings $key -}}
{{- fail (printf "settings.%s would put a secret into the settings ConfigMap: set s3.accessKey/s3.secretKey or s3.existingSecret" $key) -}}
{{- end -}}
{{- end -}}
{{- include "hurricane.validateSecurity" . -}}
{{- $seen := dict -}}
{{- range $i, $pool := $v.devicePools -}}
{{- if hasKey $seen $pool.name -}}
{{- fail (printf "devicePools[%d].name: %q is used by two pools; pool names must be unique" $i $pool.name) -}}
{{- end -}}
{{- $_ := set $seen $pool.name true -}}
{{- end -}}
{{- end -}}

{{/* {name: quantity} with every quantity as a string (the settings models take strings). */}}
{{- define "hurricane.quantities" -}}
{{- $out := dict -}}
{{- range $k, $q := . -}}
{{- $_ := set $out $k (include "hurricane.quantity" $q) -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/* One quantity as a string; whole numbers without an exponent (Helm reads numbers as floats). */}}
{{- define "hurricane.quantity" -}}
{{- if kindIs "string" . -}}
{{- . -}}
{{- else if eq (float64 .) (float64 (int64 .)) -}}
{{- int64 . -}}
{{- else -}}
{{- toString . -}}
{{- end -}}
{{- end -}}

{{/* {requests, limits} from values, quantities as strings, as JSON (settings and pods). */}}
{{- define "hurricane.resourcesJson" -}}
{{- $r := . | default dict -}}
{{- toJson (dict "requests" (include "hurricane.quantities" ($r.requests | default dict) | fromJson) "limits" (include "hurricane.quantities" ($r.limits | default dict) | fromJson)) -}}
{{- end -}}

{{/* A container's resources block (empty maps left out). */}}
{{- define "hurricane.resources" -}}
{{- $r := include "hurricane.resourcesJson" . | fromJson -}}
{{- $out := dict -}}
{{- if $r.requests }}{{ $_ := set $out "requests" $r.requests }}{{ end -}}
{{- if $r.limits }}{{ $_ := set $out "limits" $r.limits }}{{ end -}}
{{- if $out -}}
resources:
{{- toYaml $out | nindent 2 }}
{{- else -}}
resources: {}
{{- end -}}
{{- end -}}

{{/* Tolerations as the settings' Toleration model (null fields dropped). */}}
{{- define "hurricane.tolerationsJson" -}}
{{- $out := list -}}
{{- range . -}}
{{- $t := dict -}}
{{- range $k, $val := . -}}
{{- if not (kindIs "invalid" $val) -}}
{{- if eq $k "tolerationSeconds" -}}
{{- $_ := set $t $k (int64 $val) -}}
{{- else -}}
{{- $_ := set $t $k $val -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $out = append $out $t -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/* The securityContext of every container: non-root, no privilege escalation, no capabilities. */}}
{{- define "hurricane.containerSecurityContext" -}}
securityContext:
{{- toYaml .Values.containerSecurityContext | nindent 2 }}
{{- end -}}

{{/* Pod-level settings shared by every pod of the release. */}}
{{- define "hurricane.podSecurityContext" -}}
securityContext:
{{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- end -}}

{{/* The settings ConfigMap and the S3 Secret as environment (every hurricane process). */}}
{{- define "hurricane.envFrom" -}}
envFrom:
  - configMapRef:
      name: {{ include "hurricane.settingsName" . }}
  - secretRef:
      name: {{ include "hurricane.s3SecretName" . }}
{{- end -}}

{{/* Checksums that roll the pods when the settings or the secrets change. */}}
{{- define "hurricane.configChecksums" -}}
checksum/settings: {{ include (print .Template.BasePath "/settings-configmap.yaml") . | sha256sum }}
checksum/s3: {{ include (print .Template.BasePath "/s3-secret.yaml") . | sha256sum }}
{{- end -}}

{{/* ---- Security (what the chart locks down): names and pieces ---------------------------- */}}

{{/* The Secret with the Redis password: security.redis.existingSecret, or the chart's own
     (bundled Redis only). Empty when there is none (an external Redis without a password). */}}
{{- define "hurricane.redisSecretName" -}}
{{- if .Values.security.redis.existingSecret -}}
{{- .Values.security.redis.existingSecret -}}
{{- else if .Values.redis.enabled -}}
{{- include "hurricane.componentName" (dict "ctx" . "suffix" "redis-auth") -}}
{{- end -}}
{{- end -}}

{{- define "hurricane.redisSecretKey" -}}
{{- ternary .Values.security.redis.existingSecretKey "password" (ne .Values.security.redis.existingSecret "") -}}
{{- end -}}

{{/* HURRICANE_REDIS_PASSWORD from the Redis Secret, as env items (nothing without one). */}}
{{- define "hurricane.redisPasswordEnv" -}}
{{- with include "hurricane.redisSecretName" . }}
- name: HURRICANE_REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ include "hurricane.redisSecretKey" $ }}
{{- end }}
{{- end -}}

{{/* The Secret with the S3 keys of job pods (HURRICANE_K8S_S3_SECRET): never the root keys.
     security.jobsS3.existingSecret, or the chart's MinIO user (bundled MinIO). */}}
{{- define "hurricane.jobsS3SecretName" -}}
{{- .Values.security.jobsS3.existingSecret | default (include "hurricane.componentName" (dict "ctx" . "suffix" "s3-jobs")) -}}
{{- end -}}

{{/* The MinIO policy of the job user: read and write under s3.bucket/s3.prefix only, read
     under each of security.jobsS3.readOnly ("bucket" or "bucket/prefix"). */}}
{{- define "hurricane.jobsS3Policy" -}}
{{- $v := .Values -}}
{{- $grants := list (dict "where" (trimAll "/" (printf "%s/%s" $v.s3.bucket ($v.s3.prefix | default ""))) "write" true) -}}
{{- range $v.security.jobsS3.readOnly -}}
{{- $grants = append $grants (dict "where" (trimAll "/" .) "write" false) -}}
{{- end -}}
{{- $statements := list -}}
{{- range $g := $grants -}}
{{- $parts := splitn "/" 2 $g.where -}}
{{- $bucket := $parts._0 -}}
{{- $prefix := $parts._1 | default "" -}}
{{- $bucketArn := printf "arn:aws:s3:::%s" $bucket -}}
{{- $objects := ternary (printf "%s/%s/*" $bucketArn $prefix) (printf "%s/*" $bucketArn) (ne $prefix "") -}}
{{- $statements = append $statements (dict "Effect" "Allow" "Action" (list "s3:GetBucketLocation") "Resource" (list $bucketArn)) -}}
{{- $list := dict "Effect" "Allow" "Action" (list "s3:ListBucket") "Resource" (list $bucketArn) -}}
{{- if $prefix -}}
{{- $_ := set $list "Condition" (dict "StringLike" (dict "s3:prefix" (list $prefix (printf "%s/*" $prefix)))) -}}
{{- end -}}
{{- $statements = append $statements $list -}}
{{- if $g.write -}}
{{- $statements = append $statements (dict "Effect" "Allow" "Action" (list "s3:ListBucketMultipartUploads") "Resource" (list $bucketArn)) -}}
{{- $statements = append $statements (dict "Effect" "Allow" "Action" (list "s3:GetObject" "s3:PutObject" "s3:DeleteObject" "s3:AbortMultipartUpload" "s3:ListMultipartUploadParts") "Resource" (list $objects)) -}}
{{- else -}}
{{- $statements = append $statements (dict "Effect" "Allow" "Action" (list "s3:GetObject") "Resource" (list $objects)) -}}
{{- end -}}
{{- end -}}
{{- toPrettyJson (dict "Version" "2012-10-17" "Statement" $statements) -}}
{{- end -}}

{{/* Pods of the chart itself (API, workers, beat, Redis, MinIO, hooks): NetworkPolicy peers. */}}
{{- define "hurricane.releasePodLabels" -}}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: hurricane-nas
{{- end -}}

{{/* Job pods the operator creates (hurricane.operator.manifests.labels): NetworkPolicy peers. */}}
{{- define "hurricane.jobPodLabels" -}}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: hurricane-operator
{{- end -}}

{{/* app.kubernetes.io/component of the chart's pods that are Redis and MinIO clients. */}}
{{- define "hurricane.clientComponents" -}}
{{- $out := list "api" "beat" "worker-control" "worker-train" -}}
{{- range .Values.devicePools -}}
{{- $out = append $out (printf "worker-profile-%s" .name) -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/* The port of s3.endpoint (external S3): explicit, else 443 (https) or 80 (http). */}}
{{- define "hurricane.s3EndpointPort" -}}
{{- $u := urlParse .Values.s3.endpoint -}}
{{- $hostPort := splitList ":" $u.host -}}
{{- if gt (len $hostPort) 1 -}}
{{- last $hostPort -}}
{{- else -}}
{{- ternary "443" "80" (eq $u.scheme "https") -}}
{{- end -}}
{{- end -}}

{{/* Checks of the security block (rendered through "hurricane.validate"). */}}
{{- define "hurricane.validateSecurity" -}}
{{- $v := .Values -}}
{{- $j := $v.security.jobsS3 -}}
{{- if and (not $v.minio.enabled) (not $j.existingSecret) -}}
{{- fail (printf "security.jobsS3.existingSecret is empty while minio.enabled is false: job pods never get the service's S3 keys; create keys on your S3 that reach only s3://%s and name a Secret holding them (HURRICANE_S3_ACCESS_KEY, HURRICANE_S3_SECRET_KEY) in security.jobsS3.existingSecret" (trimSuffix "/" (printf "%s/%s" $v.s3.bucket ($v.s3.prefix | default "")))) -}}
{{- end -}}
{{- if and $j.existingSecret (eq $j.existingSecret (include "hurricane.s3SecretName" .)) -}}
{{- fail (printf "security.jobsS3.existingSecret (%s) is the service's S3 Secret: job pods would get the root keys; name a Secret with keys scoped to the bucket and prefix" $j.existingSecret) -}}
{{- end -}}
{{- if and $v.minio.enabled (not $j.existingSecret) (eq $j.accessKey $v.s3.accessKey) -}}
{{- fail (printf "security.jobsS3.accessKey (%s) equals s3.accessKey: the job user must be another MinIO user than the root user" $j.accessKey) -}}
{{- end -}}
{{- if and (eq $v.security.metrics.mode "token") (not $v.security.metrics.tokenSha256) -}}
{{- fail "security.metrics.tokenSha256 is empty while security.metrics.mode is token: `hurricane token create prometheus --metrics` prints a token and its SHA-256" -}}
{{- end -}}
{{- end -}}
