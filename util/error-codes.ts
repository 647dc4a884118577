/**
 * Every error code mbuild reports, in one closed set: `MbuildError` takes an `ErrorCode`, so a new
 * code is added here (with its one-line meaning) or it does not compile. `--debug` prints the code.
 * The README's "Error codes" table lists the same codes (test/unit/error-codes.test.ts checks it).
 */
export const ERROR_CODES = {
  // the command line and the Dockerfile
  MBUILD_USAGE: 'a flag, argument, command or environment setting is invalid',
  MBUILD_CONFIG: 'the mbuild config file ($MBUILD_CONFIG) cannot be read or is invalid',
  MBUILD_NO_DOCKERFILE: 'the Dockerfile cannot be read',
  MBUILD_PARSE: 'a Dockerfile line is malformed, or an instruction option is invalid',
  MBUILD_EXPAND: 'a variable substitution (${VAR:?...}, bad syntax) failed',
  MBUILD_PLAN: 'the stages do not form a valid build (FROM missing or empty, duplicate stage names)',
  MBUILD_UNKNOWN_STAGE: 'a --target or COPY --from names a stage that does not exist or comes later',
  MBUILD_UNSUPPORTED: 'an instruction or option that mbuild does not implement',
  MBUILD_CANCELED: 'a step stopped because another stage of the build failed',
  MBUILD_NEEDS_ROOT: 'the command needs root (mounts and namespaces) and runs as a normal user',
  MBUILD_ROOTLESS: 'rootless mode cannot start (no /etc/subuid range, newuidmap missing, user namespaces off) or a flag needs root',
  MBUILD_CHECK: 'a build check found something and the Dockerfile asks for errors (# check=error=true)',
  // the build context and the steps
  MBUILD_CONTEXT_READ: 'a file of the build context cannot be read',
  MBUILD_CONTEXT: 'a build context from stdin, a URL or a git repository cannot be fetched or unpacked',
  MBUILD_DOCKERIGNORE: 'the .dockerignore file cannot be read or has an invalid pattern',
  MBUILD_BAD_PATTERN: 'a file-name pattern (COPY/ADD source, .dockerignore line) is not valid',
  MBUILD_SYMLINK_LOOP: 'a symlink chain in the context or the image does not end',
  MBUILD_COPY_SOURCE_MISSING: 'a COPY/ADD source matches nothing',
  MBUILD_COPY_DEST: 'a COPY/ADD destination is not a directory where one is needed',
  MBUILD_ADD_URL: 'ADD could not download its URL',
  MBUILD_ADD_CHECKSUM: 'ADD --checksum does not match what was downloaded or cloned',
  MBUILD_ADD_GIT: 'ADD could not clone its git source (git missing, clone or checkout failed)',
  MBUILD_UNKNOWN_USER: 'a USER or --chown user is not in the image\'s /etc/passwd',
  MBUILD_UNKNOWN_GROUP: 'a USER or --chown group is not in the image\'s /etc/group',
  MBUILD_RUN_FAILED: 'a RUN command exited non-zero or was killed',
  MBUILD_RUN_MOUNT: 'a RUN --mount cannot be provided (a required secret or ssh agent not given, a source missing)',
  MBUILD_SANDBOX: 'the RUN sandbox could not be set up',
  MBUILD_EMULATION: 'a foreign platform\'s binaries cannot run here (qemu-user-static missing, binfmt_misc handler without the F flag)',
  MBUILD_ENTITLEMENT: 'a RUN option needs an entitlement the build did not grant (--allow security.insecure)',
  MBUILD_NETWORK: 'the RUN network (bridge, veth, address) could not be set up',
  MBUILD_FSOP: 'mbuild-helper could not make a whiteout, an opaque directory or a device node',
  MBUILD_MOUNT: 'the image filesystem (overlay) could not be mounted',
  MBUILD_EXPORT: 'the build result could not be written to its --output destination',
  // layers and snapshots
  MBUILD_LAYER: 'a layer tar could not be written from a directory',
  MBUILD_LAYER_NAME: 'a file name in a layer is not valid UTF-8',
  MBUILD_LAYER_APPLY: 'a layer tar could not be applied to a snapshot',
  MBUILD_EXTRACT: 'ADD could not extract a local archive',
  MBUILD_DECOMPRESS: 'compressed data (gzip, zstd) could not be decompressed',
  MBUILD_UNSAFE_ARCHIVE: 'a tar or archive tries something unsafe (escaping paths, bad whiteouts, over a budget)',
  MBUILD_SNAPSHOT: 'a snapshot in the store is not what its record says',
  // the store
  MBUILD_STORE: 'a blob in the local store is missing or not what was written',
  MBUILD_STORE_BUSY: 'prune cannot run while other processes use the store',
  MBUILD_LOCKED: 'the store stayed locked by another process',
  MBUILD_NO_SPACE: 'the store\'s filesystem is full; nothing was committed',
  MBUILD_BAD_DIGEST: 'a digest is malformed',
  MBUILD_DIGEST_MISMATCH: 'content does not match its digest',
  MBUILD_BAD_REFERENCE: 'an image reference (name:tag@digest) is malformed',
  MBUILD_IMAGE_NOT_FOUND: 'an image is not in the local store',
  MBUILD_CONFLICT: 'rmi of an image ID that has several names, without -f',
  MBUILD_NO_MATCHING_PLATFORM: 'an image index has no image for the wanted platform',
  MBUILD_BAD_ARCHIVE: 'a file given to load is not an OCI layout or docker save archive',
  MBUILD_UNSUPPORTED_COMPRESSION: 'an archive is compressed in a way mbuild cannot read',
  // registries
  MBUILD_REGISTRY: 'a registry answered in a way mbuild cannot use',
  MBUILD_REGISTRY_AUTH: 'a registry refused the credentials, or the token request failed',
  MBUILD_REGISTRY_NOT_FOUND: 'a registry does not have the manifest or blob',
  MBUILD_REGISTRY_UNREACHABLE: 'a registry cannot be reached (DNS, refused, TLS)',
  MBUILD_REGISTRY_BAD_MANIFEST: 'a registry sent a manifest or index that is not valid',
  MBUILD_REGISTRY_TOO_LARGE: 'a registry sent a manifest or config over the size limit',
  MBUILD_CREDENTIALS: 'the Docker credentials file or a credential helper failed',
  // the shared build cache (--cache-from / --cache-to)
  MBUILD_CACHE_EXPORT: 'the build cache could not be written to its --cache-to destination',
  MBUILD_CACHE_BLOB: 'a layer of a --cache-from cache could not be fetched or did not match (the build starts again without it)',
  // mbuild serve and the remote CLI
  MBUILD_REMOTE: 'the mbuild server (--host, MBUILD_HOST) cannot be reached or a call to it failed',
} as const satisfies Record<`MBUILD_${string}`, string>;

export type ErrorCode = keyof typeof ERROR_CODES;
