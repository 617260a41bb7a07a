import path from 'node:path';
import yauzl from 'yauzl';
import { AppFailure } from '../errors.js';

/** A file taken out of an archive, by its name there. */
export interface ArchivedFile {
  name: string;
  bytes: Uint8Array;
}

export const isZip = (b: Uint8Array): boolean => b.length >= 4 && b[0] === 0x50 && b[1] === 0x4b && b[2] === 0x03 && b[3] === 0x04;

/**
 * The files of a zip archive (yauzl), folders and hidden files left out. Refused before
 * inflating when it holds more than maxFiles entries or declares more than maxBytes in all; an
 * entry that inflates to more than it declares is cut off by yauzl's size check (a zip bomb that
 * lies in its directory is stopped at the lie).
 */
export function readZipFiles(bytes: Uint8Array, limits: { maxFiles: number; maxBytes: number }): Promise<ArchivedFile[]> {
  const bad = (message: string, kind: 'bad_input' | 'too_large' = 'bad_input') => new AppFailure({ kind, message, field: 'image' });
  return new Promise((resolve, reject) => {
    yauzl.fromBuffer(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength), { lazyEntries: true, validateEntrySizes: true, strictFileNames: false }, (err, zip) => {
      if (err || !zip) return reject(bad(`the zip archive could not be read: ${err?.message.slice(0, 120) ?? 'no archive'}`));
      if (zip.entryCount > limits.maxFiles) {
        zip.close();
        return reject(bad(`the zip archive holds ${zip.entryCount} entries, over the limit of ${limits.maxFiles}`, 'too_large'));
      }
      const files: ArchivedFile[] = [];
      let declared = 0, failed = false;
      const fail = (e: AppFailure) => {
        if (failed) return;
        failed = true;
        zip.close();
        reject(e);
      };
      zip.on('error', (e: Error) => fail(bad(`the zip archive is corrupt: ${e.message.slice(0, 120)}`)));
      zip.on('end', () => failed || resolve(files));
      zip.on('entry', (e: yauzl.Entry) => {
        const base = path.posix.basename(e.fileName);
        if (e.fileName.endsWith('/') || base.startsWith('.') || e.fileName.startsWith('__MACOSX/')) return zip.readEntry();
        declared += e.uncompressedSize;
        if (declared > limits.maxBytes) return fail(bad(`the zip archive's files declare over ${limits.maxBytes} bytes in all`, 'too_large'));
        zip.openReadStream(e, (err2, stream) => {
          if (err2 || !stream) return fail(bad(`${e.fileName} in the zip archive could not be read: ${err2?.message.slice(0, 120) ?? ''}`));
          const chunks: Buffer[] = [];
          stream.on('data', (c: Buffer) => chunks.push(c));
          stream.on('error', (e3: Error) => fail(bad(`${e.fileName} in the zip archive is corrupt or larger than it declares: ${e3.message.slice(0, 120)}`)));
          stream.on('end', () => {
            files.push({ name: e.fileName, bytes: Buffer.concat(chunks) });
            zip.readEntry();
          });
        });
      });
      zip.readEntry();
    });
  });
}
