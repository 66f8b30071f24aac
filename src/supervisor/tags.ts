/** What a pause/resume tag may be: 1-200 letters, digits or `_.:-`. */
export const TAG = /^[A-Za-z0-9_.:-]{1,200}$/;
