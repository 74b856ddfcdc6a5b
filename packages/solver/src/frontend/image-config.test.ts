import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fillHistoryTimes, newestTime } from './image-config.js';

const t = (n: number): string => new Date(Date.UTC(2024, 0, 1, 0, 0, n)).toISOString();

describe('fillHistoryTimes (BuildKit exporter semantics)', () => {
  it('gives leading metadata entries the first new layer time, not the base image time', () => {
    const h = fillHistoryTimes([
      { created: t(1), created_by: 'base layer' },
      { created_by: 'ENV A=1', empty_layer: true },
      { created_by: 'WORKDIR /app', empty_layer: true },
      { created: t(30), created_by: 'COPY . .' },
      { created_by: 'CMD ["x"]', empty_layer: true },
      { created: t(40), created_by: 'RUN make' },
      { created_by: 'USER app', empty_layer: true },
    ]);
    assert.deepEqual(
      h.map((e) => e.created),
      [t(1), t(30), t(30), t(30), t(30), t(40), t(40)],
    );
    assert.equal(newestTime(h), t(40));
  });

  it('uses the last known time when no timed entry follows an untimed one', () => {
    assert.deepEqual(
      fillHistoryTimes([{ created: t(1) }, { created: t(2) }, { created_by: 'CMD', empty_layer: true }]).map((e) => e.created),
      [t(1), t(2), t(2)],
    );
  });

  it('leaves entries untimed when nothing has a time, and never changes timed ones', () => {
    assert.deepEqual(fillHistoryTimes([{ created_by: 'ENV A=1', empty_layer: true }]), [{ created_by: 'ENV A=1', empty_layer: true }]);
    assert.equal(newestTime([{ created_by: 'x' }]), undefined);
    const timed = [{ created: t(5) }, { created: t(3) }];
    assert.deepEqual(fillHistoryTimes(timed), timed);
  });
});
